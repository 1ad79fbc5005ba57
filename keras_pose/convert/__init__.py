"""Pretrained weights from the originals and from MMPose.

* :func:`load_tfcpn_checkpoint` — an original tf-cpn TF1 checkpoint into ``CPN50``/``CPN101``.
* :func:`load_mmpose_checkpoint` — an MMPose 1.x ``.pth`` into the ``variant="mmpose"`` models.
* :func:`load_torchvision_resnet` — ImageNet torchvision ResNet weights into CPN's backbone.

Every loader checks that the correspondence is one-to-one and shape-exact before writing and
raises :class:`WeightMappingError` listing every unmatched name and shape otherwise.
"""

from keras_pose.convert._files import read_torch_state_dict, save_weights_atomic
from keras_pose.convert.mapping import Assignment, Layout, WeightMappingError, assign
from keras_pose.convert.tfcpn import (
    load_tfcpn_checkpoint,
    load_tfcpn_weights,
    read_tf_checkpoint,
)

__all__ = [
    "Assignment",
    "Layout",
    "WeightMappingError",
    "assign",
    "load_tfcpn_checkpoint",
    "load_tfcpn_weights",
    "read_tf_checkpoint",
    "read_torch_state_dict",
    "save_weights_atomic",
]
