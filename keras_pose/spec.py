"""What a pose model tells the rest of the package about itself.

Every model family builds a :class:`PoseModel` whose ``spec`` is a :class:`PoseSpec`. The data
pipeline, the losses, the evaluation, the export and the predictor read only this object, never
the architecture: it is the contract between the model zoo and everything downstream.

Conventions used everywhere in keras-pose:

* images and crops are ``(H, W, C)``; sizes are ``(height, width)``;
* keypoints are ``(K, 3)`` arrays ``x, y, v`` in pixel coordinates with COCO visibility flags
  (0 = not labelled, 1 = labelled but occluded, 2 = visible);
* heatmaps are ``(H, W, K)`` (channels last), batches ``(N, H, W, K)``;
* a heatmap cell ``(i, j)`` of a stride-``s`` output covers input pixels ``[j*s, (j+1)*s)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

MEGVII = "megvii"  # cv2.GaussianBlur of a delta, peak 255 (CPN, MSPN, RSN)
MSRA = "msra"  # analytic Gaussian of a given sigma, peak 1 (CPM, Hourglass)
ORIGINAL = "original"  # the papers' code: cell-centre decode (tf-cpn, MSPN, pose-hg-train, CPM)
MMPOSE = "mmpose"  # MMPose 1.x's MSRAHeatmap / MegviiHeatmap encode and decode
CONVENTIONS = (ORIGINAL, MMPOSE)
# Sub-cell refinement of a decoded arg-max: "quarter" (each family's original quarter-cell
# step), "dark" (DARK's Taylor step, Zhang et al. 2020) or None (the arg-max cell).
REFINEMENTS = ("quarter", "dark", None)


def check_refine(refine: str | None, megvii_mmpose: bool = False, name: str = "refine") -> None:
    """A ValueError unless ``refine`` is one of :data:`REFINEMENTS` that the decode has
    (``megvii_mmpose``: MMPose's Megvii decode, which has only its quarter step)."""
    if refine not in REFINEMENTS:
        raise ValueError(f"{name} must be one of {REFINEMENTS}, got {refine!r}")
    if megvii_mmpose and refine != "quarter":
        raise ValueError("MMPose's Megvii decode (convention 'mmpose') has only "
                         f"refine='quarter', got {refine!r}")


@dataclasses.dataclass(frozen=True)
class CodecSpec:
    """How targets are drawn for one output and how heatmaps are read back.

    Args:
        type: ``"megvii"`` or ``"msra"``.
        kernel_size: Megvii only: the ``cv2.GaussianBlur`` kernel (odd) used to draw the target.
        sigma: MSRA only: the Gaussian sigma in heatmap cells.
        peak: the value of a target's maximum (255 for Megvii, 1 for MSRA).
        decode_blur: Megvii decoding: the blur kernel applied before the arg-max
            (21 for CPN, 5 for MSPN/RSN); 0 disables it.
        decode_normalize: Megvii decoding: rescale each map to max 1 before blurring (CPN).
        flip_shift: flip test shifts the mirrored heatmap one cell to the right (MSRA codecs).
        convention: ``"original"`` (the papers' code) or ``"mmpose"`` (MMPose 1.x's codecs:
            MSRA targets at the rounded cell, decodes without the half-cell offset; see
            :mod:`keras_pose.codecs.mmpose`). ``variant="mmpose"`` models carry ``"mmpose"``.
        refine: the decode's sub-cell step (:data:`REFINEMENTS`): ``"quarter"`` (the
            originals': Megvii's 0.25 cell towards the second maximum, MSRA's quarter step
            per axis), ``"dark"`` (DARK's Taylor step) or ``None`` (the arg-max cell). MMPose's
            Megvii decode has only its quarter step.
    """

    type: str
    kernel_size: int = 0
    sigma: float = 0.0
    peak: float = 255.0
    decode_blur: int = 0
    decode_normalize: bool = False
    flip_shift: bool = False
    convention: str = ORIGINAL
    refine: str | None = "quarter"

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"CodecSpec.convention must be one of {CONVENTIONS}, got {self.convention!r}"
            )
        check_refine(self.refine, self.type == MEGVII and self.mmpose, "CodecSpec.refine")
        if self.type not in (MEGVII, MSRA):
            raise ValueError(f"CodecSpec.type must be '{MEGVII}' or '{MSRA}', got {self.type!r}")
        if self.type == MEGVII and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"Megvii codec needs an odd kernel_size >= 1, got {self.kernel_size}")
        if self.type == MSRA and self.sigma <= 0:
            raise ValueError(f"MSRA codec needs sigma > 0, got {self.sigma}")

    def with_kernel(self, kernel_size: int) -> CodecSpec:
        return dataclasses.replace(self, kernel_size=kernel_size)

    @property
    def mmpose(self) -> bool:
        return self.convention == MMPOSE


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One supervised, named output of a pose model.

    Args:
        name: the model's output name (a key of the dict the model returns).
        stride: input pixels per heatmap cell (4 for CPN/MSPN/RSN/Hourglass, 8 for CPM).
        codec: how its target is drawn.
        loss: ``"mse"`` (:class:`keras_pose.losses.KeypointMSE`) or ``"ohkm"``
            (:class:`keras_pose.losses.OHKMLoss`).
        loss_weight: factor of this output's loss in the total.
        target_min_visibility: keypoints whose flag is below this get an all-zero target
            (2 for the originals' plain-L2 outputs: occluded joints are pushed to zero).
        weight_min_visibility: keypoints whose flag is below this get keypoint weight 0
            (0 = every keypoint counts; 1 = labelled keypoints only, as OHKM does).
    """

    name: str
    stride: int
    codec: CodecSpec
    loss: str = "mse"
    loss_weight: float = 1.0
    target_min_visibility: int = 1
    weight_min_visibility: int = 1

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "ohkm"):
            raise ValueError(f"OutputSpec.loss must be 'mse' or 'ohkm', got {self.loss!r}")


@dataclasses.dataclass(frozen=True)
class PoseSpec:
    """Everything downstream code needs to know about a pose model.

    Args:
        family: ``"cpn"``, ``"mspn"``, ``"rsn"``, ``"cpm"``, ``"hourglass"`` or ``"hourglass52"``:
            the name of its :class:`~keras_pose.profiles.FamilyProfile`.
        input_size: ``(height, width)`` of the crop the model takes.
        num_keypoints: K.
        channel_order: ``"BGR"`` or ``"RGB"``: what the model expects of its 0..255 input.
        outputs: every supervised output, in the order the model returns them.
        final_output: the name of the output used for prediction (always ``"heatmaps"``).
        box_extension: ``(x, y)`` factors by which a person box is enlarged at test time
            before the aspect ratio is fixed to the input's.
        flip_test: whether the original evaluated with flip test.
    """

    family: str
    input_size: tuple[int, int]
    num_keypoints: int
    channel_order: str
    outputs: tuple[OutputSpec, ...]
    final_output: str = "heatmaps"
    box_extension: tuple[float, float] = (1.25, 1.25)
    flip_test: bool = True

    def __post_init__(self) -> None:
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate output names in {names}")
        if self.final_output not in names:
            raise ValueError(f"final_output {self.final_output!r} is not one of {names}")
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def output(self, name: str) -> OutputSpec:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"no output named {name!r}; outputs are {self.output_names}")

    @property
    def final(self) -> OutputSpec:
        return self.output(self.final_output)

    @property
    def refine(self) -> str | None:
        """The final output's decode refinement (see :class:`CodecSpec`)."""
        return self.final.codec.refine

    def with_refine(self, refine: str | None) -> PoseSpec:
        """This spec with every output decoded with ``refine`` (:data:`REFINEMENTS`)."""
        outputs = tuple(
            dataclasses.replace(o, codec=dataclasses.replace(o.codec, refine=refine))
            for o in self.outputs
        )
        return dataclasses.replace(self, outputs=outputs)

    def heatmap_size(self, name: str | None = None) -> tuple[int, int]:
        stride = self.output(name or self.final_output).stride
        return (self.input_size[0] // stride, self.input_size[1] // stride)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> PoseSpec:
        config = dict(config)
        outputs = tuple(
            OutputSpec(**{**o, "codec": CodecSpec(**o["codec"])}) for o in config.pop("outputs")
        )
        return cls(
            outputs=outputs,
            input_size=tuple(config.pop("input_size")),
            box_extension=tuple(config.pop("box_extension")),
            **config,
        )


def megvii_outputs(
    names: Sequence[str],
    kernels: Sequence[int],
    losses: Sequence[str],
    loss_weights: Sequence[float],
    stride: int = 4,
    decode_blur: int = 5,
    decode_normalize: bool = False,
    convention: str = ORIGINAL,
) -> tuple[OutputSpec, ...]:
    """Output specs for the Megvii families, with the originals' masking rules.

    Plain-L2 outputs keep a target only for visible joints (v=2) and count every joint; OHKM
    outputs keep a target for labelled joints (v>=1) and count only those. ``convention`` is
    the codecs' (``"mmpose"`` for the ``variant="mmpose"`` graphs).
    """
    if not len(names) == len(kernels) == len(losses) == len(loss_weights):
        raise ValueError("names, kernels, losses and loss_weights must have the same length")
    specs = []
    for name, kernel, loss, weight in zip(names, kernels, losses, loss_weights):
        codec = CodecSpec(
            MEGVII,
            kernel_size=kernel,
            decode_blur=decode_blur,
            decode_normalize=decode_normalize,
            convention=convention,
        )
        ohkm = loss == "ohkm"
        specs.append(
            OutputSpec(
                name,
                stride,
                codec,
                loss=loss,
                loss_weight=weight,
                target_min_visibility=1 if ohkm else 2,
                weight_min_visibility=1 if ohkm else 0,
            )
        )
    return tuple(specs)


def msra_outputs(
    names: Sequence[str], sigma: float, stride: int, convention: str = ORIGINAL
) -> tuple[OutputSpec, ...]:
    """Output specs for the MSRA families (CPM stages, Hourglass stacks): the same target for
    every output, plain L2 of weight 1 on labelled joints.

    The flip test needs no one-cell shift here: targets sit in cell ``floor(x / stride)`` and
    decode to the cell centre, so the mirrored map is already aligned (as in pose-hg-train).
    MMPose's convention (targets at the rounded cell, no half-cell offset) shifts the mirrored
    map, as MMPose's ``shift_heatmap=True``.
    """
    mmpose = convention == MMPOSE
    codec = CodecSpec(MSRA, sigma=sigma, peak=1.0, flip_shift=mmpose, convention=convention)
    return tuple(OutputSpec(name, stride, codec, loss="mse", loss_weight=1.0) for name in names)
