"""Deployment: TF Serving SavedModel, LiteRT (fp32/fp16/int8, GPU-delegate clean) and ONNX.

Every exporter checks the exported model numerically against Keras before moving it into
place; a failed check raises and writes nothing.
"""

from keras_pose.export.gpu_ops import gpu_delegate_problems, tflite_ops_used
from keras_pose.export.litert import LiteRTConverter, LiteRTRunner, litert
from keras_pose.export.onnx import OnnxRunner, onnx
from keras_pose.export.parity import ExportCompatibilityError, ExportParityError
from keras_pose.export.saved_model import rest_request, saved_model, signature_defs
from keras_pose.export.serving_config import add_to_models_config, models_config

__all__ = [
    "ExportCompatibilityError",
    "ExportParityError",
    "LiteRTConverter",
    "LiteRTRunner",
    "OnnxRunner",
    "add_to_models_config",
    "gpu_delegate_problems",
    "litert",
    "models_config",
    "onnx",
    "rest_request",
    "saved_model",
    "signature_defs",
    "tflite_ops_used",
]
