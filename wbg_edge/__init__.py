"""wbg-edge runtime: real-time background removal with ONNX Runtime or TensorRT (never imports torch).

    from wbg_edge import Pipeline, PipelineConfig, Matte

The names are loaded on first use, so `import wbg_edge.native` (or the CLI, which sets OpenCV's log level
before OpenCV loads) does not pull in OpenCV and ONNX Runtime.
"""
__version__ = "0.1.0"
__all__ = ["Matte", "Pipeline", "PipelineConfig", "__version__"]


def __getattr__(name: str):
    if name in ("Pipeline", "Matte"):
        from . import pipeline
        return getattr(pipeline, name)
    if name == "PipelineConfig":
        from .settings import PipelineConfig
        return PipelineConfig
    raise AttributeError(f"module 'wbg_edge' has no attribute {name!r}")
