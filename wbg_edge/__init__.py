"""wbg-edge runtime: real-time background removal with ONNX Runtime or TensorRT (never imports torch)."""
__version__ = "0.1.0"
