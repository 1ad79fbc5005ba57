"""Pretrained weights from the originals and from MMPose.

* :func:`load_tfcpn_checkpoint` — an original tf-cpn TF1 checkpoint into ``CPN50``/``CPN101``.
* :func:`load_mmpose_checkpoint` — an MMPose 1.x ``.pth`` into the ``variant="mmpose"`` models
  (MSPN, RSN, CPM) and :class:`keras_pose.models.hourglass52.Hourglass52Model`, whose specs
  carry MMPose's codec convention (every decode of keras-pose reads them as MMPose does).
* :func:`load_torchvision_resnet` — ImageNet torchvision ResNet weights into CPN's trunk
  (``CPN50(backbone_weights=...)``).

Every loader checks that the correspondence is one-to-one and shape-exact before writing and
raises :class:`WeightMappingError` listing every unmatched name and shape otherwise. The mapping
core works on plain ``{name: numpy array}`` dicts; PyTorch is needed only to read ``.pth`` files.
"""

from keras_pose.convert._files import read_torch_state_dict, save_weights_atomic
from keras_pose.convert.mapping import Assignment, Layout, WeightMappingError, assign
from keras_pose.convert.mmpose import load_mmpose_checkpoint, load_mmpose_weights
from keras_pose.convert.tfcpn import (
    load_tfcpn_checkpoint,
    load_tfcpn_weights,
    read_tf_checkpoint,
)
from keras_pose.convert.torchvision import load_torchvision_resnet

__all__ = [
    "Assignment",
    "Layout",
    "WeightMappingError",
    "assign",
    "load_mmpose_checkpoint",
    "load_mmpose_weights",
    "load_tfcpn_checkpoint",
    "load_tfcpn_weights",
    "load_torchvision_resnet",
    "read_tf_checkpoint",
    "read_torch_state_dict",
    "save_weights_atomic",
]
