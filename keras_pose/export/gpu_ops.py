"""Which ops a ``.tflite`` file uses, read from its flatbuffer, and whether the GPU delegate
runs them.

``tf.lite.experimental.Analyzer(gpu_compatibility=True)`` is not enough on its own (with TF
2.21 it passed graphs with Flex, GATHER_ND and FLOOR_MOD ops), so the op codes are read from the
model's ``operator_codes`` table and checked against the delegate's documented list.
"""

from __future__ import annotations

import dataclasses

# TFLite GPU delegate documentation, "Supported ops" (tensorflow/lite/g3doc/performance/gpu.md,
# now ai.google.dev/edge/litert/performance/gpu): ops supported in 16- and 32-bit float, with
# the op versions it states ("By default, all ops are only supported at version 1" except those
# listed with a range). LSTM is left out (not a pose-model op).
GPU_DELEGATE_FLOAT_OPS: dict[str, int] = {
    "ADD": 1,
    "AVERAGE_POOL_2D": 1,
    "CONCATENATION": 1,
    "CONV_2D": 1,
    "DEPTHWISE_CONV_2D": 2,
    "EXP": 1,
    "FULLY_CONNECTED": 1,
    "LOGICAL_AND": 1,
    "LOGISTIC": 1,
    "MAX_POOL_2D": 1,
    "MAXIMUM": 1,
    "MINIMUM": 1,
    "MUL": 1,
    "PAD": 1,
    "PRELU": 1,
    "RELU": 1,
    "RELU6": 1,
    "RESHAPE": 1,
    "RESIZE_BILINEAR": 3,
    "SOFTMAX": 1,
    "STRIDED_SLICE": 1,
    "SUB": 1,
    "TRANSPOSE_CONV": 1,
}
# Same page: "Enabling the quantization support allows the appropriate versions" (the delegate
# runs 8-bit models in float, dequantizing them), so int8 models may use QUANTIZE/DEQUANTIZE and
# higher op versions. The float16 post-training quantization page: the GPU delegate consumes
# float16 weights directly, so a float16 model's DEQUANTIZE of constant weights is handled.
EXTRA_OPS = {None: (), "float16": ("DEQUANTIZE",), "int8": ("QUANTIZE", "DEQUANTIZE")}

@dataclasses.dataclass(frozen=True)
class OpCode:
    """One entry of a model's ``operator_codes``: builtin name (or ``CUSTOM:<code>``), version."""

    name: str
    version: int

    @property
    def is_custom(self) -> bool:
        return self.name.startswith("CUSTOM")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - the export extra installs ai-edge-litert
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def tflite_op_codes(model_content: bytes) -> list[OpCode]:
    """The op codes a ``.tflite`` flatbuffer declares (Flex ops show as ``CUSTOM:Flex...``)."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(model_content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Builtin codes above 127 live in builtin_code; older files only fill the deprecated byte.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"UNKNOWN_{builtin}")
        if name == "CUSTOM":
            custom = code.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        codes.append(OpCode(name, int(code.Version())))
    return codes


def tflite_ops_used(model_content: bytes) -> list[OpCode]:
    """Op codes actually used by an operator of any subgraph (unused table entries dropped)."""
    schema = _schema()
    codes = tflite_op_codes(model_content)
    model = schema.Model.GetRootAsModel(model_content, 0)
    used = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            used.add(subgraph.Operators(o).OpcodeIndex())
    return [codes[i] for i in sorted(used)]


def gpu_delegate_problems(model_content: bytes, quantize: str | None = None) -> list[str]:
    """Why the GPU delegate would not run the whole graph: one message per offending op.

    ``quantize`` (``None``, ``"float16"`` or ``"int8"``) is how the model was converted; it
    allows that mode's (de)quantization ops, and for int8 the higher op versions. An empty
    list means every op is on the documented list.
    """
    if quantize not in EXTRA_OPS:
        raise ValueError(f"quantize must be one of {list(EXTRA_OPS)}, got {quantize!r}")
    problems = []
    for op in tflite_ops_used(model_content):
        if op.is_custom:
            problems.append(f"{op.name} is a custom/Flex op (the GPU delegate runs builtins only)")
        elif op.name in EXTRA_OPS[quantize]:
            continue
        elif op.name not in GPU_DELEGATE_FLOAT_OPS:
            problems.append(f"{op.name} is not on the GPU delegate's supported-op list")
        elif quantize != "int8" and op.version > GPU_DELEGATE_FLOAT_OPS[op.name]:
            problems.append(
                f"{op.name} version {op.version} > the documented float version "
                f"{GPU_DELEGATE_FLOAT_OPS[op.name]}"
            )
    return problems
