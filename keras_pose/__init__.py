"""keras-pose: top-down human pose estimation in Keras 3, faithful to CPN, MSPN, RSN, CPM and
Stacked Hourglass."""

from keras_pose import layers, losses
from keras_pose.models import PoseModel
from keras_pose.spec import CodecSpec, OutputSpec, PoseSpec
from keras_pose.version import __version__

__all__ = ["CodecSpec", "OutputSpec", "PoseModel", "PoseSpec", "__version__", "layers", "losses"]
