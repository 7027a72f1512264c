"""Model bundles: a folder of ONNX files and/or engines plus `manifest.json` (DESIGN.md section 3).

The manifest is the contract between `export` (which writes it) and the runtime (which reads it):

    {
      "schema": 1,
      "name": "default",
      "model_res": 256, "refine_res": 512,          # defaults the runtime starts from
      "runtime": {"patch_context": 4},              # optional: other PipelineConfig defaults
      "artifacts": [                                # one entry per file
        {"stage": "depth" | "coarse" | "refiner",
         "file": "matting.onnx", "format": "onnx" | "engine",
         "precision": "fp32" | "fp16",
         "contract": "depth" | "rgbd" | "rgb" | "refiner",
         "contract_version": 1,
         "sha256": "...",
         "inputs":  {"input": [1, 4, "H", "W"]},    # str = dynamic dim
         "outputs": {"alpha": [1, 1, "H", "W"]},
         "size_multiple": 32,                       # dynamic sides must be multiples of this
         "fixed_size": [256, 256],                  # only for fixed-size contracts (rgb): [H, W]
         "layout": "NCHW",
         "engine": {"module": "tensorrt_rtx", "version": "...", "gpu": "...", "path": "..."},
         "validation": {...}}
      ],
      "producer": {"torch": "...", "onnx": "...", ...},
      "provenance": {...},                          # where imported weights came from
      "base": "segmenter-refiner",                  # optional: stages this bundle lacks come from a
      "base_stages": ["refiner"]                    # shipped bundle (SHIPPED_BUNDLES) or a folder path;
    }                                               # only these stages when given (default: all)

A bundle with a `base` (an imported segmenter, say) holds only its own files; `Bundle.resolve(stage)`
finds each stage here first, then in the base, and every file is still checked against the manifest
that lists it.

Everything here is plain Python + json + hashlib so the runtime can verify a bundle with no
ML framework installed. Errors are one line and name the file. (Just over 400 lines, kept as one module:
it is one contract, the manifest, read and written in one place.)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

SCHEMA = 1
CONTRACT_VERSION = 1
STAGES = ("depth", "coarse", "refiner")
# contract -> (stage, input names, output names)
CONTRACTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "depth": ("depth", ("image",), ("depth",)),
    "rgbd": ("coarse", ("input",), ("alpha",)),
    "rgb": ("coarse", ("image",), ("alpha",)),
    "refiner": ("refiner", ("input",), ("delta",)),
}


CHANNELS = {"depth": 3, "rgbd": 4, "rgb": 3, "refiner": 5}  # input channels per contract


class BundleError(ValueError):
    """A bundle or manifest that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Artifact:
    stage: str
    file: str
    format: str
    precision: str
    contract: str
    sha256: str
    inputs: dict
    outputs: dict
    contract_version: int = CONTRACT_VERSION
    size_multiple: int = 32
    fixed_size: tuple[int, int] | None = None
    layout: str = "NCHW"
    engine: dict | None = None
    validation: dict | None = None

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.fixed_size is not None:
            d["fixed_size"] = list(self.fixed_size)
        return d


@dataclass(frozen=True)
class Bundle:
    root: Path
    name: str
    artifacts: tuple[Artifact, ...]
    model_res: int = 256
    refine_res: int = 512
    producer: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    base: str | None = None
    base_stages: tuple[str, ...] | None = None  # stages borrowed from the base; None = any it has
    runtime: dict = field(default_factory=dict)  # PipelineConfig defaults this bundle's models want

    def path(self, artifact: Artifact) -> Path:
        return self.root / artifact.file

    def stages(self) -> set[str]:
        return {a.stage for a in self.artifacts}

    def available_stages(self) -> set[str]:
        """Stages this bundle runs: its own plus those it borrows from its base."""
        base = self.base_bundle()
        return self.stages() | ({s for s in base.stages() if self._borrows(s)} if base is not None else set())

    def _borrows(self, stage: str) -> bool:
        return self.base is not None and (self.base_stages is None or stage in self.base_stages)

    def find(self, stage: str, format: str = "onnx", precision: str | None = None) -> Artifact | None:
        """The artifact for a stage in a format, preferring `precision` (else fp32, then any)."""
        cands = [a for a in self.artifacts if a.stage == stage and a.format == format]
        for want in (precision, "fp32", None):
            for a in cands:
                if want is None or a.precision == want:
                    return a
        return None

    def base_bundle(self) -> Bundle | None:
        """The bundle named by `base`: a shipped one by name (`SHIPPED_BUNDLES`), else a folder relative to this one."""
        return self._base

    @cached_property
    def _base(self) -> Bundle | None:  # read once: resolve() asks for it per stage
        if self.base is None:
            return None
        root = shipped_bundle_dir(self.base) if self.base in SHIPPED_BUNDLES else (self.root / self.base)
        base = load_bundle(root)
        if base.base is not None:
            raise BundleError(f"{root / 'manifest.json'}: a base bundle cannot itself have a base")
        return base

    def resolve(self, stage: str, format: str = "onnx", precision: str | None = None
                ) -> tuple[Bundle, Artifact] | None:
        """(bundle that holds it, artifact) for a stage: this bundle first, then its base."""
        a = self.find(stage, format, precision)
        if a is not None:
            return self, a
        base = self.base_bundle() if self._borrows(stage) else None
        if base is not None:
            a = base.find(stage, format, precision)
            if a is not None:
                return base, a
        return None

    def verify(self, artifact: Artifact) -> Path:
        """Check the file exists and its SHA-256 matches the manifest; return its path."""
        self.verified_bytes(artifact)
        return self.path(artifact)

    def verified_bytes(self, artifact: Artifact) -> bytes:
        """The file's bytes once its SHA-256 matched the manifest: load these, not the path, so the bytes
        checked are the bytes run (no swap between check and load, no unlisted external-data file)."""
        p = self.path(artifact)
        if not p.is_file():
            raise BundleError(f"{p}: listed in {self.root / 'manifest.json'} but missing")
        if not p.resolve().is_relative_to(self.root.resolve()):  # a symlink out of the folder
            raise BundleError(f"{p}: resolves to {p.resolve()}, outside the bundle folder {self.root}; "
                              f"artifacts must be files inside it")
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != artifact.sha256:
            raise BundleError(f"{p}: SHA-256 {digest[:12]}... does not match the manifest "
                              f"({artifact.sha256[:12]}...); the file was changed or corrupted, re-export it")
        return data

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA, "name": self.name, "model_res": self.model_res, "refine_res": self.refine_res,
             "artifacts": [a.to_dict() for a in self.artifacts], "producer": self.producer}
        if self.provenance:
            d["provenance"] = self.provenance
        if self.base is not None:
            d["base"] = self.base
        if self.base_stages is not None:
            d["base_stages"] = list(self.base_stages)
        if self.runtime:
            d["runtime"] = self.runtime
        return d


def _static(d) -> bool:
    return isinstance(d, int) and d >= 0  # ORT gives str / None, TensorRT -1, for dynamic dims


def check_io(artifact: Artifact, inputs: dict[str, tuple], outputs: dict[str, tuple], path: Path) -> None:
    """The tensors a loaded model really has (name -> shape) against its contract and its manifest entry,
    so a file with the wrong names, rank or channels fails at load with one line, not mid-stream."""
    _, ins, outs = CONTRACTS[artifact.contract]
    if set(inputs) != set(ins) or not set(outs) <= set(outputs):
        raise BundleError(f"{path}: model has inputs {sorted(inputs)} / outputs {sorted(outputs)}; contract "
                          f"{artifact.contract!r} needs inputs {list(ins)} / outputs {list(outs)}")
    axis = 3 if artifact.layout.upper() == "NHWC" else 1
    for name in ins:
        shape = tuple(inputs[name])
        if len(shape) != 4:
            raise BundleError(f"{path}: input {name!r} has rank {len(shape)} (shape {shape}); contract "
                              f"{artifact.contract!r} needs rank 4 ({artifact.layout})")
        if _static(shape[axis]) and shape[axis] != CHANNELS[artifact.contract]:
            raise BundleError(f"{path}: input {name!r} has {shape[axis]} channels (shape {shape}); contract "
                              f"{artifact.contract!r} needs {CHANNELS[artifact.contract]}")
    for name, shape in [*((n, inputs[n]) for n in ins), *((n, outputs[n]) for n in outs)]:
        declared = {**artifact.inputs, **artifact.outputs}[name]
        shape = tuple(shape)
        if len(shape) != len(declared) or any(_static(a) and _static(b) and a != b
                                              for a, b in zip(shape, declared, strict=True)):
            raise BundleError(f"{path}: tensor {name!r} has shape {shape}, the manifest declares {declared}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# field -> accepted JSON types, checked before anything is built from a (possibly hand-edited) entry
_ARTIFACT_TYPES = {"stage": str, "file": str, "format": str, "precision": str, "contract": str, "sha256": str,
                   "inputs": dict, "outputs": dict, "contract_version": int, "size_multiple": int,
                   "fixed_size": (list, type(None)), "layout": str, "engine": (dict, type(None)),
                   "validation": (dict, type(None))}
_REQUIRED = ("stage", "file", "format", "precision", "contract", "sha256", "inputs", "outputs")


def _check_types(d, where: Path) -> None:
    if not isinstance(d, dict):
        raise BundleError(f"{where}: artifact entry {d!r} is not an object")
    name = d.get("file", "?")
    for k in _REQUIRED:
        if k not in d:
            raise BundleError(f"{where}: artifact entry {name!r} is malformed (field {k!r} is missing)")
    for k, types in _ARTIFACT_TYPES.items():
        v = d.get(k)
        if k in d and (not isinstance(v, types) or isinstance(v, bool)):  # bool is an int in Python
            want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise BundleError(f"{where}: artifact entry {name!r} is malformed ({k!r} must be {want}, "
                              f"got {type(v).__name__})")
    for k in ("inputs", "outputs"):
        for t, dims in d[k].items():
            if not isinstance(dims, list) or any(not isinstance(x, (int, str)) or isinstance(x, bool) for x in dims):
                raise BundleError(f"{where}: artifact entry {name!r} is malformed ({k}[{t!r}] must be a list "
                                  f"of ints and dim names, got {dims!r})")
    fixed = d.get("fixed_size")
    if fixed is not None and (len(fixed) != 2 or any(not isinstance(x, int) or isinstance(x, bool) or x < 1
                                                      for x in fixed)):
        raise BundleError(f"{where}: artifact entry {name!r} is malformed (fixed_size must be [H, W], got {fixed!r})")
    if len(d["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in d["sha256"]):
        raise BundleError(f"{where}: artifact entry {name!r} is malformed (sha256 must be 64 hex digits)")


def _parse_artifact(d: dict, where: Path) -> Artifact:
    _check_types(d, where)
    try:
        a = Artifact(stage=d["stage"], file=d["file"], format=d["format"], precision=d["precision"],
                     contract=d["contract"], sha256=d["sha256"], inputs=dict(d["inputs"]),
                     outputs=dict(d["outputs"]), contract_version=int(d.get("contract_version", 1)),
                     size_multiple=int(d.get("size_multiple", 32)),
                     fixed_size=tuple(d["fixed_size"]) if d.get("fixed_size") else None,
                     layout=d.get("layout", "NCHW"), engine=d.get("engine"), validation=d.get("validation"))
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{where}: artifact entry {d.get('file', '?')!r} is malformed ({e!r})") from None
    if a.contract not in CONTRACTS:
        raise BundleError(f"{where}: artifact {a.file!r} has unknown contract {a.contract!r}; "
                          f"expected one of {sorted(CONTRACTS)}")
    if a.contract_version != CONTRACT_VERSION:
        raise BundleError(f"{where}: artifact {a.file!r} has contract version {a.contract_version}, "
                          f"this runtime reads version {CONTRACT_VERSION}")
    stage, ins, outs = CONTRACTS[a.contract]
    if a.stage != stage:
        raise BundleError(f"{where}: artifact {a.file!r} has contract {a.contract!r} but stage {a.stage!r} "
                          f"(expected {stage!r})")
    if tuple(a.inputs) != ins or tuple(a.outputs) != outs:
        raise BundleError(f"{where}: artifact {a.file!r} declares inputs {list(a.inputs)} / outputs "
                          f"{list(a.outputs)}; contract {a.contract!r} needs {list(ins)} / {list(outs)}")
    if a.format not in ("onnx", "engine"):
        raise BundleError(f"{where}: artifact {a.file!r} has format {a.format!r}; expected 'onnx' or 'engine'")
    if a.layout.upper() not in ("NCHW", "NHWC"):
        raise BundleError(f"{where}: artifact {a.file!r} has layout {a.layout!r}; expected 'NCHW' or 'NHWC'")
    if a.contract == "rgb" and a.fixed_size is None:
        raise BundleError(f"{where}: artifact {a.file!r} has contract 'rgb' but no fixed_size [H, W]")
    if a.contract != "rgb" and (a.fixed_size is not None or a.layout.upper() != "NCHW"):
        raise BundleError(f"{where}: artifact {a.file!r}: fixed_size and layout NHWC are for contract 'rgb' "
                          f"only; contract {a.contract!r} is NCHW with dynamic H, W")
    if Path(a.file).is_absolute() or ".." in Path(a.file).parts or Path(a.file).name in ("", "."):
        raise BundleError(f"{where}: artifact file {a.file!r} must be a plain name inside the bundle folder")
    return a


def _parse_base_stages(v, where: Path) -> tuple[str, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or any(s not in STAGES for s in v):
        raise BundleError(f"{where}: base_stages must be a list of {list(STAGES)}, got {v!r}")
    return tuple(v)


RUNTIME_HINTS = {"patch_context": int}


def _parse_runtime(v, where: Path) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict) or any(k not in RUNTIME_HINTS or not isinstance(x, RUNTIME_HINTS[k])
                                      for k, x in v.items()):
        raise BundleError(f"{where}: runtime must map {sorted(RUNTIME_HINTS)} to integers, got {v!r}")
    return dict(v)


_TOP_TYPES = {"name": str, "model_res": int, "refine_res": int, "producer": dict, "provenance": dict,
              "base": (str, type(None)), "artifacts": list}


def load_bundle(root: str | os.PathLike) -> Bundle:
    """Read and check `root/manifest.json` (hashes are checked per file by `Bundle.verify`)."""
    root = Path(root)
    mpath = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root}: bundle folder does not exist (or name a shipped one: "
                          f"{', '.join(n for n in BUNDLE_NAMES if n != 'default')})")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: no manifest.json in the bundle folder")
    try:
        d = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    schema = d.get("schema") if isinstance(d, dict) else None
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
        raise BundleError(f"{mpath}: manifest schema {schema} is newer than this runtime reads ({SCHEMA}); "
                          f"upgrade wbg-edge or re-export the bundle with this version")
    if schema != SCHEMA:
        raise BundleError(f"{mpath}: manifest schema {schema!r}, expected {SCHEMA}")
    arts = d.get("artifacts")
    if not isinstance(arts, list) or not arts:
        raise BundleError(f"{mpath}: manifest lists no artifacts")
    for k, types in _TOP_TYPES.items():
        if k in d and (not isinstance(d[k], types) or isinstance(d[k], bool)):
            raise BundleError(f"{mpath}: manifest field {k!r} has the wrong type ({type(d[k]).__name__})")
    for k in ("model_res", "refine_res"):
        if k in d and d[k] < 1:  # (multiples of 14 for Depth Anything, of 32 for ours: the models decide)
            raise BundleError(f"{mpath}: manifest {k} must be a positive integer, got {d[k]}")
    return Bundle(root=root, name=str(d.get("name", root.name)),
                  artifacts=tuple(_parse_artifact(a, mpath) for a in arts),
                  model_res=int(d.get("model_res", 256)), refine_res=int(d.get("refine_res", 512)),
                  producer=dict(d.get("producer", {})), provenance=dict(d.get("provenance", {})),
                  base=d.get("base"),
                  base_stages=_parse_base_stages(d.get("base_stages"), mpath),
                  runtime=_parse_runtime(d.get("runtime"), mpath))


def write_bundle(bundle: Bundle) -> Path:
    """Write the manifest atomically (files must already be in place); returns its path."""
    mpath = bundle.root / "manifest.json"
    atomic_write_bytes(mpath, (json.dumps(bundle.to_dict(), indent=2, sort_keys=False) + "\n").encode())
    return mpath


def wbg_edge_home() -> Path:
    """Per-user data root (imported bundles, cached wheels): $WBG_EDGE_HOME, else ~/.cache/wbg-edge."""
    env = os.environ.get("WBG_EDGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wbg-edge"


def real_world_bundle_dir() -> Path:
    """Where `python -m export.import_coarse mediapipe-selfie` installs the real-world bundle by default."""
    return wbg_edge_home() / "bundles" / "real-world"


# bundles inside the package (wbg_edge/models/<name>): "default" (trained by training/recipes/default.py),
# "segmenter-refiner" (a refiner alone, for imported segmenters; training/recipes/real_world.py) and "real"
# (MediaPipe's selfie segmenter converted by export/import_coarse.py, with segmenter-refiner as its base)
SHIPPED_BUNDLES = ("default", "segmenter-refiner", "real")

# The names `--bundle` and `PipelineConfig(bundle=...)` take: name -> (shipped folder, what runs). A name wins
# over a folder of the same name in the working directory (write ./real for that folder), so a name means the
# same bytes everywhere. "real" is always the shipped copy, never a newer import in the cache: shipped is
# reproducible and hash-checked with the package; an import is used by naming its folder.
BUNDLE_NAMES = {
    "real": ("real", "MediaPipe selfie segmenter + temporal and guided filters, for real people"),
    "synthetic": ("default", "depth + matting + refiner trained on generated scenes"),
    "default": ("default", "depth + matting + refiner trained on generated scenes"),  # the old name of synthetic
}


def shipped_bundle_dir(name: str) -> Path:
    return Path(__file__).resolve().parent / "models" / name


def bundle_location(spec: str | os.PathLike) -> str:
    """The folder `spec` names: a shipped bundle's for a name in BUNDLE_NAMES, else `spec` itself (a path)."""
    if isinstance(spec, str) and spec in BUNDLE_NAMES:
        return str(shipped_bundle_dir(BUNDLE_NAMES[spec][0]))
    return os.fspath(spec)


def describe_bundle(spec: str | os.PathLike | None, bundle: Bundle) -> str:
    """`spec` as the user gave it, and what runs: "real (MediaPipe selfie segmenter + ...)" for a name,
    "DIR ('its name': coarse + refiner from segmenter-refiner)" for a folder."""
    name = "synthetic" if spec is None else spec if isinstance(spec, str) and spec in BUNDLE_NAMES else \
        next((n for n in ("real", "synthetic") if Path(spec).resolve() == Path(bundle_location(n))), None)
    if name is not None:  # a name, or a shipped bundle's folder (a config holds names as folders)
        return f"{name} ({BUNDLE_NAMES[name][1]})"
    parts = []
    for stage in STAGES:
        found = bundle.resolve(stage)
        if found is not None:
            parts.append(stage if found[0] is bundle else f"{stage} from {found[0].name}")
    return f"{os.fspath(spec)} ({bundle.name!r}: {' + '.join(parts)})"


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (trained by training/recipes/default.py)."""
    return Path(__file__).resolve().parent / "models" / "default"
