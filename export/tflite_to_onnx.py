"""Direct TFLite -> ONNX conversion for small float image-to-image models (MediaPipe selfie segmentation).

Built on the `tflite` flatbuffer parser and `onnx.helper` only (the `[import]` extra); no TensorFlow.

Contract of the result:
  input  `image` float32 (1, C, H, W)  -- the TFLite input (1, H, W, C) in NCHW, values passed through unchanged
  output `alpha` float32 (1, C, H, W)  -- the TFLite output (1, H, W, C) in NCHW, clamped to [0, 1] by default

Every rank-4 activation is kept in NCHW inside the ONNX graph, so the NHWC -> NCHW layout change costs no
Transpose node: weights are permuted once at conversion and axis-dependent ops (MEAN, CONCATENATION,
broadcast constants) have their axes remapped. float16 weights behind DEQUANTIZE are widened to float32
constants (exact), as the TFLite CPU kernels do. The output is byte-for-byte deterministic for a given input.

Supported ops (everything the selfie models use, plus a few trivial neighbours): CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, ADD, SUB, MUL, RELU, RELU6, LOGISTIC, TANH, HARD_SWISH, RESIZE_BILINEAR,
CONCATENATION, DEQUANTIZE (of constants) and MediaPipe's custom `Convolution2DTransposeBias`. Anything else
raises `ConversionError` naming the op.
"""
from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np

CONVERTER_VERSION = "1.0"
OPSET = 17
# NHWC axis -> NCHW axis for rank-4 tensors.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(ValueError):
    """The TFLite model uses something this converter does not handle; the message is one line."""


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # TFLite (NHWC) shape
    dtype: np.dtype
    const: np.ndarray | None  # constant value (NHWC layout), after DEQUANTIZE folding


def _import_deps():
    try:
        import onnx  # noqa: F401
        import tflite  # noqa: F401
    except ImportError as e:
        raise ConversionError(f"TFLite import needs the optional packages tflite and onnx "
                              f"(pip install 'wbg-edge[import]'): {e}") from None
    import onnx
    import tflite
    return tflite, onnx


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(model, op, tflite) -> str:
    oc = model.OperatorCodes(op.OpcodeIndex())
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    if code == tflite.BuiltinOperator.CUSTOM:
        return oc.CustomCode().decode()
    return _enum_names(tflite.BuiltinOperator).get(code, f"builtin#{code}")


def op_histogram(data: bytes) -> Counter:
    """Count the operators of the TFLite model's first subgraph (custom ops by their custom code)."""
    tflite, _ = _import_deps()
    model = _root(data, tflite)
    g = model.Subgraphs(0)
    return Counter(_op_name(model, g.Operators(i), tflite) for i in range(g.OperatorsLength()))


def _root(data: bytes, tflite):
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConversionError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ConversionError(f"expected one subgraph, found {model.SubgraphsLength()}")
    return model


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: output ceil(size/stride); the odd pixel of padding goes at the end."""
    eff = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


class _Converter:
    def __init__(self, data: bytes, input_name: str, output_name: str):
        self.tflite, self.onnx = _import_deps()
        self.model = _root(data, self.tflite)
        self.g = self.model.Subgraphs(0)
        self.input_name, self.output_name = input_name, output_name
        self.tensors = [self._read_tensor(i) for i in range(self.g.TensorsLength())]
        self.values: dict[int, str] = {}  # TFLite tensor index -> ONNX value name (runtime tensors)
        self.nodes: list = []
        self.inits: list = []
        self._uid = 0

    # -- tensors ---------------------------------------------------------------------------------
    def _read_tensor(self, i: int) -> _Tensor:
        t = self.g.Tensors(i)
        tt = self.tflite.TensorType
        dtypes = {tt.FLOAT32: np.float32, tt.FLOAT16: np.float16, tt.INT32: np.int32, tt.INT64: np.int64,
                  tt.INT8: np.int8, tt.UINT8: np.uint8}
        if t.Type() not in dtypes:
            raise ConversionError(f"tensor {t.Name().decode()!r} has unsupported type {t.Type()}")
        dtype = np.dtype(dtypes[t.Type()])
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        const = None
        buf = self.model.Buffers(t.Buffer())
        if buf is not None and buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
            const = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        elif buf is not None and buf.Offset() > 1:
            raise ConversionError(f"tensor {t.Name().decode()!r} keeps its data outside the flatbuffer "
                                  f"(large-model layout), which this converter does not read")
        q = t.Quantization()
        if dtype in (np.int8, np.uint8) and q is not None and q.ScaleLength() > 0:
            raise ConversionError(f"tensor {t.Name().decode()!r} is integer-quantized; only float models convert")
        return _Tensor(t.Name().decode(), shape, dtype, const)

    def _fresh(self, hint: str) -> str:
        self._uid += 1
        return f"{hint}_{self._uid}"

    def _init(self, hint: str, array: np.ndarray) -> str:
        name = self._fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _value(self, idx: int, op: str) -> str:
        """ONNX name of a runtime tensor, or an initializer for a constant used as an elementwise operand."""
        if idx in self.values:
            return self.values[idx]
        t = self.tensors[idx]
        if t.const is None:
            raise ConversionError(f"{op}: input tensor {t.name!r} is produced by no converted op")
        c = t.const.astype(np.float32) if t.const.dtype.kind == "f" else t.const
        if c.ndim == 4:  # NHWC constant -> NCHW
            c = c.transpose(0, 3, 1, 2)
        elif c.ndim == 1 and c.size > 1:  # broadcasts along NHWC's last axis = NCHW channels
            c = c.reshape(-1, 1, 1)
        elif c.ndim not in (0, 1):
            raise ConversionError(f"{op}: constant operand {t.name!r} of rank {c.ndim} has no NCHW mapping")
        return self._init("const", c)

    def _out(self, op, k: int = 0) -> tuple[int, str]:
        idx = int(op.Outputs(k))
        name = f"t{idx}_{self.tensors[idx].name}"
        self.values[idx] = name
        return idx, name

    def _node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=self._fresh(op_type), **attrs))

    def _const_input(self, op, k: int, what: str) -> np.ndarray:
        idx = int(op.Inputs(k))
        if idx < 0:
            return None
        t = self.tensors[idx]
        if t.const is None:
            raise ConversionError(f"{what} tensor {t.name!r} is not a constant")
        return t.const

    def _activation(self, code: int, pre: str, out: str) -> None:
        """Apply a TFLite fused activation to `pre`, writing `out`."""
        aft = self.tflite.ActivationFunctionType
        if code == aft.NONE:
            self._node("Identity", [pre], [out])
        elif code == aft.RELU:
            self._node("Relu", [pre], [out])
        elif code in (aft.RELU6, aft.RELU_N1_TO_1):
            lo, hi = (0.0, 6.0) if code == aft.RELU6 else (-1.0, 1.0)
            self._node("Clip", [pre, self._init("lo", np.array(lo, np.float32)),
                                self._init("hi", np.array(hi, np.float32))], [out])
        elif code == aft.TANH:
            self._node("Tanh", [pre], [out])
        else:
            raise ConversionError(f"unsupported fused activation {code}")

    def _with_activation(self, code: int, op_type: str, inputs: list[str], out: str, **attrs) -> None:
        if code == self.tflite.ActivationFunctionType.NONE:
            self._node(op_type, inputs, [out], **attrs)
        else:
            pre = self._fresh(f"{out}_pre")
            self._node(op_type, inputs, [pre], **attrs)
            self._activation(code, pre, out)

    def _options(self, op, cls):
        o = cls()
        t = op.BuiltinOptions()
        if t is None:
            return None
        o.Init(t.Bytes, t.Pos)
        return o

    # -- ops -------------------------------------------------------------------------------------
    def _conv_pads(self, padding: int, in_hw, k_hw, strides, dilations) -> list[int]:
        if padding == self.tflite.Padding.VALID:
            return [0, 0, 0, 0]
        (t, b), (l, r) = (_same_pads(in_hw[i], k_hw[i], strides[i], dilations[i]) for i in (0, 1))
        return [t, l, b, r]

    def _conv(self, op, depthwise: bool) -> None:
        tfl = self.tflite
        o = self._options(op, tfl.DepthwiseConv2DOptions if depthwise else tfl.Conv2DOptions)
        x_idx = int(op.Inputs(0))
        x = self.tensors[x_idx]
        w = self._const_input(op, 1, "filter").astype(np.float32)
        b = self._const_input(op, 2, "bias") if op.InputsLength() > 2 else None
        if depthwise:  # (1, KH, KW, C*M) -> (C*M, 1, KH, KW), one group per input channel
            group = x.shape[3]
            w_onnx = w.transpose(3, 0, 1, 2)
        else:  # (O, KH, KW, I) -> (O, I, KH, KW); grouped when the input has more channels than I
            group = x.shape[3] // w.shape[3]
            w_onnx = w.transpose(0, 3, 1, 2)
        strides = [o.StrideH(), o.StrideW()]
        dil = [o.DilationHFactor() or 1, o.DilationWFactor() or 1]
        k_hw = list(w_onnx.shape[2:])
        inputs = [self._value(x_idx, "CONV"), self._init("weight", w_onnx)]
        if b is not None:
            inputs.append(self._init("bias", b.astype(np.float32)))
        _, out = self._out(op)
        self._with_activation(o.FusedActivationFunction(), "Conv", inputs, out, kernel_shape=k_hw, strides=strides,
                              dilations=dil, group=group,
                              pads=self._conv_pads(o.Padding(), x.shape[1:3], k_hw, strides, dil))

    def _pool(self, op, op_type: str) -> None:
        o = self._options(op, self.tflite.Pool2DOptions)
        x_idx = int(op.Inputs(0))
        k = [o.FilterHeight(), o.FilterWidth()]
        s = [o.StrideH(), o.StrideW()]
        in_hw = list(self.tensors[x_idx].shape[1:3])
        _, out = self._out(op)
        if op_type == "AveragePool" and k == in_hw and o.Padding() == self.tflite.Padding.VALID:
            # A global average pool (the squeeze-excite blocks). ReduceMean, same math, sums in a tree in
            # onnxruntime: ~10x smaller float32 error than its AveragePool's running sum over 128x128 pixels.
            self._with_activation(o.FusedActivationFunction(), "ReduceMean", [self._value(x_idx, "POOL")], out,
                                  axes=[2, 3], keepdims=1)
            return
        pads = self._conv_pads(o.Padding(), in_hw, k, s, [1, 1])
        attrs = {"kernel_shape": k, "strides": s, "pads": pads}
        if op_type == "AveragePool":
            attrs["count_include_pad"] = 0  # TFLite averages over the valid pixels only
        self._with_activation(o.FusedActivationFunction(), op_type, [self._value(x_idx, "POOL")], out, **attrs)

    def _mean(self, op) -> None:
        x_idx = int(op.Inputs(0))
        axes = self._const_input(op, 1, "MEAN axes").reshape(-1).astype(np.int64)
        rank = len(self.tensors[x_idx].shape)
        axes = [int(a) % rank for a in axes]
        if rank == 4:
            axes = sorted(_NHWC_TO_NCHW_AXIS[a] for a in axes)
        o = self._options(op, self.tflite.ReducerOptions)
        keep = bool(o.KeepDims()) if o is not None else False
        if rank == 4 and not keep:
            raise ConversionError("MEAN without keep_dims on a rank-4 tensor changes the layout; not supported")
        _, out = self._out(op)
        self._node("ReduceMean", [self._value(x_idx, "MEAN")], [out], axes=axes, keepdims=int(keep))

    def _binary(self, op, op_type: str, options_cls) -> None:
        a, b = (self._value(int(op.Inputs(k)), op_type) for k in (0, 1))
        o = self._options(op, options_cls)
        act = o.FusedActivationFunction() if o is not None else 0
        _, out = self._out(op)
        self._with_activation(act, op_type, [a, b], out)

    def _unary(self, op, op_type: str, **attrs) -> None:
        x = self._value(int(op.Inputs(0)), op_type)
        _, out = self._out(op)
        self._node(op_type, [x], [out], **attrs)

    def _resize_bilinear(self, op) -> None:
        o = self._options(op, self.tflite.ResizeBilinearOptions)
        x_idx = int(op.Inputs(0))
        size = self._const_input(op, 1, "RESIZE_BILINEAR size").reshape(-1).astype(np.int64)
        n, _, _, c = self.tensors[x_idx].shape
        if o is not None and o.AlignCorners():
            mode = "align_corners"
        elif o is not None and o.HalfPixelCenters():
            mode = "half_pixel"  # TFLite clamps source coordinates to the edge, as ONNX does
        else:
            mode = "asymmetric"
        sizes = self._init("sizes", np.array([n, c, size[0], size[1]], np.int64))
        _, out = self._out(op)
        self._node("Resize", [self._value(x_idx, "RESIZE_BILINEAR"), "", "", sizes], [out], mode="linear",
                   coordinate_transformation_mode=mode)

    def _concat(self, op) -> None:
        o = self._options(op, self.tflite.ConcatenationOptions)
        rank = len(self.tensors[int(op.Inputs(0))].shape)
        axis = o.Axis() % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        ins = [self._value(int(op.Inputs(k)), "CONCATENATION") for k in range(op.InputsLength())]
        _, out = self._out(op)
        self._with_activation(o.FusedActivationFunction(), "Concat", ins, out, axis=axis)

    def _dequantize(self, op) -> None:
        src = self.tensors[int(op.Inputs(0))]
        if src.const is None or src.dtype != np.float16:
            raise ConversionError(f"DEQUANTIZE of {src.name!r}: only float16 constants are supported")
        self.tensors[int(op.Outputs(0))].const = src.const.astype(np.float32)  # exact widening

    def _transpose_conv_bias(self, op) -> None:
        """MediaPipe `Convolution2DTransposeBias`: inputs x (NHWC), weights (O, KH, KW, I), bias (O,);
        custom options are a raw TfLiteTransposeConvParams {int32 padding (1 SAME, 2 VALID), stride_w, stride_h}."""
        raw = bytes(op.CustomOptionsAsNumpy()) if op.CustomOptionsLength() else b""
        if len(raw) < 12:
            raise ConversionError("Convolution2DTransposeBias: custom options are not 3 int32")
        padding, stride_w, stride_h = struct.unpack("<3i", raw[:12])
        x_idx = int(op.Inputs(0))
        w = self._const_input(op, 1, "Convolution2DTransposeBias weights").astype(np.float32)
        b = self._const_input(op, 2, "Convolution2DTransposeBias bias").astype(np.float32)
        k_hw = [w.shape[1], w.shape[2]]
        strides = [stride_h, stride_w]
        in_hw = self.tensors[x_idx].shape[1:3]
        pads, out_pad = [0, 0, 0, 0], [0, 0]
        if padding == 1:  # SAME: output = input * stride
            for i in (0, 1):
                total = (in_hw[i] - 1) * strides[i] + k_hw[i] - in_hw[i] * strides[i]
                if total >= 0:
                    pads[i], pads[i + 2] = total // 2, total - total // 2
                else:
                    out_pad[i] = -total
        elif padding != 2:
            raise ConversionError(f"Convolution2DTransposeBias: unknown padding code {padding}")
        expect = [(in_hw[i] - 1) * strides[i] + k_hw[i] + out_pad[i] - pads[i] - pads[i + 2] for i in (0, 1)]
        if tuple(expect) != tuple(self.tensors[int(op.Outputs(0))].shape[1:3]):
            raise ConversionError(f"Convolution2DTransposeBias: computed output {expect} does not match the "
                                  f"declared {self.tensors[int(op.Outputs(0))].shape}")
        inputs = [self._value(x_idx, "Convolution2DTransposeBias"),
                  self._init("weight", w.transpose(3, 0, 1, 2)),  # (O, KH, KW, I) -> (I, O, KH, KW)
                  self._init("bias", b)]
        _, out = self._out(op)
        self._node("ConvTranspose", inputs, [out], kernel_shape=k_hw, strides=strides, pads=pads,
                   output_padding=out_pad)

    # -- graph -----------------------------------------------------------------------------------
    def run(self, graph_name: str, clamp: bool):
        tfl, onnx = self.tflite, self.onnx
        ins, outs = self.g.InputsAsNumpy(), self.g.OutputsAsNumpy()
        if len(ins) != 1 or len(outs) != 1:
            raise ConversionError(f"expected one input and one output, found {len(ins)} and {len(outs)}")
        x_t, y_t = self.tensors[int(ins[0])], self.tensors[int(outs[0])]
        if len(x_t.shape) != 4 or x_t.dtype != np.float32 or len(y_t.shape) != 4:
            raise ConversionError(f"expected a float NHWC image in and out; got {x_t.shape} -> {y_t.shape}")
        self.values[int(ins[0])] = self.input_name
        handlers = {
            "CONV_2D": lambda op: self._conv(op, depthwise=False),
            "DEPTHWISE_CONV_2D": lambda op: self._conv(op, depthwise=True),
            "AVERAGE_POOL_2D": lambda op: self._pool(op, "AveragePool"),
            "MAX_POOL_2D": lambda op: self._pool(op, "MaxPool"),
            "MEAN": self._mean,
            "ADD": lambda op: self._binary(op, "Add", tfl.AddOptions),
            "SUB": lambda op: self._binary(op, "Sub", tfl.SubOptions),
            "MUL": lambda op: self._binary(op, "Mul", tfl.MulOptions),
            "RELU": lambda op: self._unary(op, "Relu"),
            "RELU6": lambda op: self._activation(tfl.ActivationFunctionType.RELU6,
                                                 self._value(int(op.Inputs(0)), "RELU6"), self._out(op)[1]),
            "LOGISTIC": lambda op: self._unary(op, "Sigmoid"),
            "TANH": lambda op: self._unary(op, "Tanh"),
            # TFLite: x * relu6(x + 3) / 6 == ONNX HardSwish: x * max(0, min(1, x / 6 + 0.5))
            "HARD_SWISH": lambda op: self._unary(op, "HardSwish"),
            "RESIZE_BILINEAR": self._resize_bilinear,
            "CONCATENATION": self._concat,
            "DEQUANTIZE": self._dequantize,
            "Convolution2DTransposeBias": self._transpose_conv_bias,
        }
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            name = _op_name(self.model, op, tfl)
            if name not in handlers:
                raise ConversionError(f"operator {name} (#{i}) is not supported by the TFLite->ONNX converter")
            handlers[name](op)
        y_idx = int(outs[0])
        if y_idx not in self.values:
            raise ConversionError(f"the model output {y_t.name!r} is produced by no converted op")
        if clamp:
            self._node("Clip", [self.values[y_idx], self._init("lo", np.array(0.0, np.float32)),
                                self._init("hi", np.array(1.0, np.float32))], [self.output_name])
        else:
            self._node("Identity", [self.values[y_idx]], [self.output_name])
        n, h, w, c = x_t.shape
        yn, yh, yw, yc = y_t.shape
        graph = onnx.helper.make_graph(
            self.nodes, graph_name,
            [onnx.helper.make_tensor_value_info(self.input_name, onnx.TensorProto.FLOAT, [n, c, h, w])],
            [onnx.helper.make_tensor_value_info(self.output_name, onnx.TensorProto.FLOAT, [yn, yc, yh, yw])],
            initializer=self.inits)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                       producer_name="wbg-edge.tflite_to_onnx", producer_version=CONVERTER_VERSION)
        model.ir_version = 8  # readable by onnxruntime >= 1.14 and TensorRT 10
        return model


def convert(data: bytes, *, input_name: str = "image", output_name: str = "alpha", graph_name: str = "tflite",
            clamp: bool = True):
    """Convert a float TFLite image model (NHWC in, NHWC out) to an NCHW `onnx.ModelProto`.

    `clamp` ends the graph with Clip(0, 1) (the alpha contract). Raises ConversionError (one line) for anything
    outside the supported op set."""
    return _Converter(data, input_name, output_name).run(graph_name, clamp)
