"""What a model family is, in one place: :class:`FamilyProfile`.

A profile holds everything about a family that is not its graph: the codec conventions its
specs follow, the training augmentation and border fill, the optimizer and learning-rate
schedule, the evaluation protocol (NMS, person rescoring, flip test), the registry names of its
models and their published COCO results. Every consumer reads it from here through
``spec.family`` (:func:`profile_for`): the data pipeline (augmentation, border), the trainer
(optimizer, schedule, batch, epochs), ``evaluate_coco`` (NMS, rescoring), the model's
``default_optimizer()``, the registry (which names belong to which family) and the README's
tables. Adding a family means writing its model file and its profile here.

This module is plain Python (no numpy, TensorFlow or Keras), so the numpy parts of
:mod:`keras_pose.data` and :mod:`keras_pose.evaluation` read it without importing a framework.
The facts and their upstream files are in ``docs/provenance.md`` (cited by section below).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# tf-cpn pads crops with this BGR pixel mean, which its normalisation maps to zero.
CPN_PIXEL_MEAN_BGR = (102.9801, 115.9465, 122.7717)
COCO_TRAIN_PEOPLE = 149_813  # person instances with keypoints in COCO train2017
MMPOSE_KEYPOINT_THRESHOLD = 0.2  # MMPose CocoMetric keypoint_score_thr
MMPOSE_NMS = "oks"  # MMPose CocoMetric nms_mode='oks_nms', nms_thr 0.9
# MMPose's TopdownAffine pads with 0: the fill of every variant="mmpose" spec, whatever the
# family's own (docs/provenance.md#mmpose)
MMPOSE_BORDER_VALUE = (0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """How the original trained a family: optimizer, learning rate and schedule.

    Args:
        optimizer: the ``keras.optimizers`` class name (``"Adam"``, ``"RMSprop"``).
        optimizer_options: further constructor arguments of that optimizer.
        learning_rate: base (peak) learning rate.
        lr_batch: the learning rate is for this global batch and scales linearly with it
            (MSPN/RSN: 5e-4 per GPU of 32 crops); ``None``: independent of the batch.
        schedule: ``"warmup_linear"``, ``"multistep"`` or ``"constant"``.
        warmup: warm-up length as a fraction of the run; ``warmup_factor`` its start.
        milestones: fractions of the run at which a multistep schedule multiplies by ``decay``.
        samples: training crops the original processed; the default number of epochs repeats
            it on any data set.
        batch_per_replica: crops per GPU in the original.
        description: the optimizer and schedule in words (the README's training table).
        source: where the facts come from.
    """

    optimizer: str
    learning_rate: float
    lr_batch: int | None
    schedule: str
    optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warmup: float = 0.0
    warmup_factor: float = 1.0
    milestones: tuple[float, ...] = ()
    decay: float = 0.1
    samples: int = 0
    batch_per_replica: int = 32
    description: str = ""
    source: str = ""

    def learning_rate_for(self, global_batch: int) -> float:
        if self.lr_batch is None:
            return self.learning_rate
        return self.learning_rate * global_batch / self.lr_batch

    def default_epochs(self, samples_per_epoch: int) -> int:
        """Epochs of ``samples_per_epoch`` crops that see as many samples as the original."""
        return max(1, math.ceil(self.samples / max(1, samples_per_epoch)))


@dataclasses.dataclass(frozen=True)
class EvaluationProtocol:
    """How the family is evaluated on COCO by default.

    Args:
        nms: ``"none"`` or ``"oks"`` (OKS-NMS; see :mod:`keras_pose.evaluation.nms`).
        keypoint_threshold: the person score is the box score times the mean of the keypoint
            scores above it; ``None``: the plain mean.
        flip_test: whether the original averaged with the flipped crop.
        source: where the protocol comes from.
    """

    nms: str
    keypoint_threshold: float | None
    flip_test: bool
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Published:
    """A published COCO keypoint AP of the original (or, where marked, a peer's) model."""

    input_size: tuple[int, int]
    ap: float | None
    split: str
    source: str


@dataclasses.dataclass(frozen=True)
class FamilyProfile:
    """Everything about one model family that is not its graph.

    Args:
        family: the name ``spec.family`` carries.
        model_names: the registry names (``keras_pose.models.MODELS``) of this family.
        codec: ``"megvii"`` or ``"msra"``: how its targets are drawn and read back.
        channel_order: ``"BGR"`` or ``"RGB"``, what the original fed the network.
        box_extension: ``(x, y)`` test-time box enlargement before the aspect ratio is fixed.
        augmentation: :class:`keras_pose.data.AugmentConfig` fields of the training recipe.
        train_box_factor: without ``box_extension`` in ``augmentation``, training boxes are
            ``box_extension`` times this.
        training: the optimizer and schedule.
        evaluation: the test protocol.
        published: published results by registry name.
    """

    family: str
    model_names: tuple[str, ...]
    codec: str
    channel_order: str
    box_extension: tuple[float, float]
    augmentation: Mapping[str, Any]
    training: TrainingRecipe
    evaluation: EvaluationProtocol
    train_box_factor: float = 1.0
    published: Mapping[str, Published] = dataclasses.field(default_factory=dict)

    @property
    def border_value(self) -> tuple[float, float, float]:
        """The BGR fill outside the image the original uses (training and test crops)."""
        return tuple(self.augmentation.get("border_value", (0.0, 0.0, 0.0)))

    def augment_fields(self, box_extension: tuple[float, float]) -> dict[str, Any]:
        """The ``AugmentConfig`` fields for a spec whose test box extension is given."""
        train_box = tuple(float(e) * self.train_box_factor for e in box_extension)
        return {"box_extension": train_box, **self.augmentation}


# tf-cpn: an "epoch" is 60,000 crops; x0.5 every 60 of 400 epochs; 8 GPUs x 32. Adam is
# invariant to the summed (not averaged) tower gradients, so the rate does not scale.
_TFCPN_EPOCH = 60_000
_TFCPN_EPOCHS = 400
_MEGVII_ITERS = 96_000  # MSPN/RSN: 96,000 iterations of 8 x 32 crops
_MEGVII_BATCH = 256
_MEGVII_PROTOCOL = EvaluationProtocol(
    nms="none",
    keypoint_threshold=None,
    flip_test=True,
    source="MSPN/RSN test.py: no NMS, box score x mean keypoint score, flip "
           "(docs/provenance.md#mspn)",
)
_MMPOSE_PROTOCOL = EvaluationProtocol(
    nms=MMPOSE_NMS,
    keypoint_threshold=MMPOSE_KEYPOINT_THRESHOLD,
    flip_test=True,
    source="MMPose CocoMetric defaults (docs/provenance.md#mmpose)",
)


def _mmpose_recipe(batch: int, description: str, source: str) -> TrainingRecipe:
    """MMPose's COCO recipe: Adam 5e-4, 210 epochs, warm-up 500 iterations from 0.001x,
    x0.1 at epochs 170 and 200; ``batch`` the global batch (8 GPUs)."""
    iterations = 210 * math.ceil(COCO_TRAIN_PEOPLE / batch)
    return TrainingRecipe(
        optimizer="Adam",
        learning_rate=5e-4,
        lr_batch=None,
        schedule="multistep",
        warmup=500 / iterations,
        warmup_factor=0.001,
        milestones=(170 / 210, 200 / 210),
        decay=0.1,
        samples=210 * COCO_TRAIN_PEOPLE,
        batch_per_replica=batch // 8,
        description=description,
        source=source,
    )


CPN = FamilyProfile(
    family="cpn",
    model_names=("cpn50", "cpn101"),
    codec="megvii",
    channel_order="BGR",
    box_extension=(1.2, 1.3),  # imgExtXBorder 0.1, imgExtYBorder 0.15 per side
    augmentation={
        "scheme": "cpn",
        "scale_mode": "uniform_capped",
        "scale": (0.7 / 1.25, 1.35 / 1.25),
        "rotation": 45.0,
        "flip_space": "crop",
        "border_value": CPN_PIXEL_MEAN_BGR,
    },
    train_box_factor=1.25,
    training=TrainingRecipe(
        optimizer="Adam",
        learning_rate=5e-4,
        lr_batch=None,
        schedule="multistep",
        milestones=tuple(e / _TFCPN_EPOCHS for e in range(60, _TFCPN_EPOCHS, 60)),
        decay=0.5,
        samples=_TFCPN_EPOCH * _TFCPN_EPOCHS,
        batch_per_replica=32,
        description="Adam 5e-4, halved every 60 'epochs' of 60,000 crops, 400 such epochs "
                    "(24M crops, 4 per person); weight decay 1e-5 (L2)",
        source="tf-cpn config.py, tfflat/base.py, issue #17 (docs/provenance.md#cpn)",
    ),
    evaluation=EvaluationProtocol(
        nms="none",
        keypoint_threshold=None,
        flip_test=True,
        source="tf-cpn mptest.py (docs/provenance.md#cpn)",
    ),
    published={
        "cpn50": Published((256, 192), 69.7, "COCO minival, detector human AP 55.3",
                           "tf-cpn README (docs/provenance.md#published)"),
        "cpn101": Published((384, 288), 72.9, "COCO minival, detector human AP 55.3",
                            "tf-cpn README; no 256x192 number (docs/provenance.md#published)"),
    },
)

_MEGVII_AUGMENTATION = {
    "box_extension": (1.05, 1.05),
    "random_extension": (0.6, 0.8),
    "scale": (0.6, 1.0),
    "rotation": 45.0,
    "rotation_prob": 0.5,
    "flip_prob": 0.5,
    "flip_space": "image",
    "half_body_prob": 0.3,
    "half_body_min_keypoints": 3,
}
_MEGVII_TRAINING = TrainingRecipe(
    optimizer="Adam",
    learning_rate=5e-4,
    lr_batch=32,
    schedule="warmup_linear",
    warmup=2_400 / _MEGVII_ITERS,
    warmup_factor=0.1,
    samples=_MEGVII_ITERS * _MEGVII_BATCH,
    batch_per_replica=32,
    description="Adam 5e-4 x GPUs (32 crops each), linear warm-up over 2,400 of 96,000 "
                "iterations from 0.1x, then linear decay to 0; weight decay 1e-5",
    source="MSPN config.py, solver.py, train.py (docs/provenance.md#mspn)",
)
_MSPN_README = "MSPN README (docs/provenance.md#published)"
_RSN_README = "RSN README (docs/provenance.md#published)"

MSPN = FamilyProfile(
    family="mspn",
    model_names=("mspn50", "2xmspn50", "3xmspn50", "4xmspn50"),
    codec="megvii",
    channel_order="BGR",
    box_extension=(1.09, 1.135),  # attribute.py TEST.X_EXTENTION 0.09, Y_EXTENTION 0.135
    augmentation=_MEGVII_AUGMENTATION,
    training=_MEGVII_TRAINING,
    evaluation=_MEGVII_PROTOCOL,
    published={
        "mspn50": Published((256, 192), 71.5, "COCO minival", _MSPN_README),
        "2xmspn50": Published((256, 192), 74.5, "COCO minival", _MSPN_README),
        "3xmspn50": Published((256, 192), 75.2, "COCO minival", _MSPN_README),
        "4xmspn50": Published((256, 192), 75.9, "COCO minival", _MSPN_README),
    },
)

RSN = dataclasses.replace(
    MSPN,
    family="rsn",
    # "tiny" (TinyPoseModel) stands in for RSN by default: its targets, augmentation, recipe
    model_names=("rsn18", "rsn50", "2xrsn50", "3xrsn50", "4xrsn50", "tiny"),
    training=dataclasses.replace(
        _MEGVII_TRAINING,
        source="RSN shares MSPN's solver byte for byte (docs/provenance.md#rsn)",
    ),
    published={
        "rsn18": Published((256, 192), 70.4, "COCO val, the public PyTorch code (73.6 MegBrain)",
                           _RSN_README),
        "rsn50": Published((256, 192), 74.7, "COCO val (MegBrain version)", _RSN_README),
        "2xrsn50": Published((256, 192), 77.2, "COCO val (MegBrain version)", _RSN_README),
        "3xrsn50": Published((256, 192), 78.2, "COCO val (MegBrain version)", _RSN_README),
        "4xrsn50": Published((256, 192), 79.0, "COCO val (MegBrain version)", _RSN_README),
    },
)

CPM = FamilyProfile(
    family="cpm",
    model_names=("cpm",),
    codec="msra",
    channel_order="BGR",
    box_extension=(1.25, 1.25),
    augmentation={
        "scale_mode": "inverse_uniform",
        "scale": (0.7, 1.3),
        "rotation": 40.0,
        "rotation_prob": 1.0,
        "flip_prob": 0.5,
        "flip_space": "image",
        "border_value": (128.0, 128.0, 128.0),
    },
    training=_mmpose_recipe(
        512,
        description="Adam 5e-4 (MMPose's COCO recipe; the Caffe original used SGD 8e-5 with "
                    "a summed loss), warm-up 500 iterations from 0.001x, x0.1 at epochs 170 "
                    "and 200 of 210",
        source="MMPose td-hm_cpm_8xb64-210e_coco-256x192.py (docs/provenance.md#mmpose); "
               "the Caffe solver in docs/provenance.md#cpm",
    ),
    # applyModel.m: multi-scale search, no flip (variant="mmpose" specs flip, as MMPose)
    evaluation=dataclasses.replace(_MMPOSE_PROTOCOL, flip_test=False),
    published={
        "cpm": Published((256, 192), 62.7, "COCO val2017, MMPose's CPM (BatchNorm, no centre "
                         "map); the original has no COCO result",
                         "MMPose (docs/provenance.md#mmpose)"),
    },
)

HOURGLASS = FamilyProfile(
    family="hourglass",
    model_names=("hourglass",),
    codec="msra",
    channel_order="RGB",
    box_extension=(1.25, 1.25),
    augmentation={
        "scale_mode": "log2_normal",
        "scale": (0.25, 0.5),
        "rotation_mode": "normal",
        "rotation": 30.0,
        "rotation_prob": 0.4,
        "flip_prob": 0.5,
        "flip_space": "crop",
        "color_jitter": 0.4,
    },
    training=TrainingRecipe(
        optimizer="RMSprop",
        # Torch7 divides by sqrt(m) + 1e-8, Keras by sqrt(m + epsilon): 1e-16 gives the
        # same floor where m vanishes and is negligible elsewhere.
        optimizer_options={"rho": 0.99, "momentum": 0.0, "epsilon": 1e-16},
        learning_rate=2.5e-4,
        lr_batch=None,
        schedule="constant",
        samples=100 * 8_000 * 6,
        batch_per_replica=6,
        description="RMSprop 2.5e-4 (rho 0.99, no momentum) constant, batch 6, 100 epochs of "
                    "8,000 iterations; no weight decay",
        source="pose-hg-train opts.lua, train.lua (docs/provenance.md#hourglass)",
    ),
    evaluation=_MMPOSE_PROTOCOL,
    published={
        "hourglass": Published((256, 256), None, "no COCO result for Newell's 8-stack network "
                               "(MPII PCKh 90.9); MMPose's 72.6 is a different Hourglass-52",
                               "docs/provenance.md#published"),
    },
)

HOURGLASS52 = FamilyProfile(
    family="hourglass52",
    model_names=("hourglass52",),
    codec="msra",
    channel_order="RGB",
    box_extension=(1.25, 1.25),
    # MMPose trains it with RandomHalfBody and RandomBBoxTransform (shift, scale 0.5-1.5,
    # rotation +-80); AugmentConfig has no shift, so the hourglass augmentation stands in.
    augmentation=HOURGLASS.augmentation,
    training=_mmpose_recipe(
        256,
        description="Adam 5e-4 (MMPose's recipe), warm-up 500 iterations from 0.001x, x0.1 at "
                    "epochs 170 and 200 of 210, batch 8 x 32",
        source="MMPose td-hm_hourglass52_8xb32-210e_coco-256x256.py "
               "(docs/provenance.md#mmpose)",
    ),
    evaluation=_MMPOSE_PROTOCOL,
    published={
        "hourglass52": Published((256, 256), 72.6, "COCO val2017, MMPose's one-stack "
                                 "Hourglass-52", "MMPose (docs/provenance.md#mmpose)"),
    },
)

PROFILES: dict[str, FamilyProfile] = {
    profile.family: profile for profile in (CPN, MSPN, RSN, CPM, HOURGLASS, HOURGLASS52)
}


def profile_for(family: str) -> FamilyProfile:
    """The profile of ``family`` (a ``spec.family``); a ValueError names the known ones."""
    key = str(family).lower()
    if key not in PROFILES:
        raise ValueError(f"unknown model family {family!r} (known: {sorted(PROFILES)})")
    return PROFILES[key]


def family_of(model_name: str) -> str:
    """The family of a registry name, from the profiles' ``model_names``."""
    for profile in PROFILES.values():
        if model_name in profile.model_names:
            return profile.family
    raise ValueError(f"no family lists the model {model_name!r}")


def describe_augmentation(fields: Mapping[str, Any]) -> str:
    """A short description of ``AugmentConfig`` fields (for the README's family table)."""
    if fields.get("scheme") == "cpn":
        parts = ["4 crops per person (zoom, its crop flip, 2 rotations)"]
    else:
        parts = []
    box = fields.get("box_extension", (1.25, 1.25))
    parts.append(f"box x{box[0]:.4g}/{box[1]:.4g}")
    extra = fields.get("random_extension", (0.0, 0.0))
    if any(extra):
        parts.append(f"+U(0,{extra[0]:g})/U(0,{extra[1]:g})")
    low, high = fields.get("scale", (1.0, 1.0))
    parts.append(f"scale {fields.get('scale_mode', 'uniform')} ({low:.3g}, {high:.3g})")
    if fields.get("rotation"):
        always = fields.get("scheme") == "cpn"  # its two rotated copies always rotate
        probability = "" if always else f" p {fields.get('rotation_prob', 0.0):g}"
        parts.append(f"rotation {fields.get('rotation_mode', 'uniform')} "
                     f"{fields['rotation']:g}{probability}")
    if fields.get("flip_prob"):
        parts.append(f"flip {fields.get('flip_space', 'image')} p {fields['flip_prob']:g}")
    if fields.get("half_body_prob"):
        parts.append(f"half body p {fields['half_body_prob']:g}")
    if fields.get("color_jitter"):
        parts.append(f"colour x U(1 +- {fields['color_jitter']:g})")
    return "; ".join(parts)


def describe_border(border_value: Any) -> str:
    values = [float(v) for v in border_value]
    if len(set(values)) == 1:
        return f"{values[0]:g}"
    return "BGR mean (" + ", ".join(f"{v:.1f}" for v in values) + ")"


def describe_rescoring(keypoint_threshold: float | None) -> str:
    if keypoint_threshold is None:
        return "box x mean keypoint score"
    return f"box x mean keypoint score > {keypoint_threshold:g}"


def families_table() -> str:
    """The README's table of every family's profile."""
    lines = [
        "| family | models | optimizer | schedule | training augmentation | border | NMS "
        "| person score | flip test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for profile in PROFILES.values():
        augmentation = describe_augmentation(profile.augment_fields(profile.box_extension))
        protocol = profile.evaluation
        lines.append(
            f"| {profile.family} | {', '.join(profile.model_names)} "
            f"| {profile.training.optimizer} {profile.training.learning_rate:g} "
            f"| {profile.training.schedule} | {augmentation} "
            f"| {describe_border(profile.border_value)} | {protocol.nms} "
            f"| {describe_rescoring(protocol.keypoint_threshold)} "
            f"| {'yes' if protocol.flip_test else 'no'} |"
        )
    return "\n".join(lines)
