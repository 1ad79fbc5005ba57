"""Deployment: TF Serving SavedModel, LiteRT (fp32/fp16/int8, GPU-delegate clean) and ONNX.

Every exporter checks the exported model numerically against Keras before moving it into
place; a failed check raises and writes nothing.
"""

from keras_pose.export.gpu_ops import gpu_delegate_problems, tflite_ops_used
from keras_pose.export.litert import LiteRTRunner, litert
from keras_pose.export.onnx import OnnxRunner, onnx
from keras_pose.export.parity import ExportCompatibilityError, ExportParityError
from keras_pose.export.saved_model import rest_request, saved_model, signature_defs

__all__ = [
    "ExportCompatibilityError",
    "ExportParityError",
    "LiteRTRunner",
    "OnnxRunner",
    "gpu_delegate_problems",
    "litert",
    "onnx",
    "rest_request",
    "saved_model",
    "signature_defs",
    "tflite_ops_used",
]
