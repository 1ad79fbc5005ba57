"""What a keypoint set is: names, left/right pairs, skeleton and OKS sigmas.

COCO-17 is built in (:data:`COCO17`); any other COCO-format keypoint set is described with
:class:`DatasetInfo` directly or read from a COCO ``categories`` entry with
:meth:`DatasetInfo.from_coco_category`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A keypoint set.

    Args:
        name: dataset name.
        keypoint_names: K names, in channel order.
        flip_pairs: ``(left, right)`` index pairs swapped by a horizontal flip.
        skeleton: ``(a, b)`` 0-based index pairs drawn as limbs.
        sigmas: K per-keypoint OKS sigmas (COCO's ``kpt_oks_sigmas``).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if len(self.sigmas) != k:
            raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
        for pair in (*self.flip_pairs, *self.skeleton):
            if len(pair) != 2 or not all(0 <= i < k for i in pair):
                raise ValueError(f"{self.name}: pair {pair} is out of range for {k} keypoints")
        flat = [i for pair in self.flip_pairs for i in pair]
        if len(set(flat)) != len(flat):
            raise ValueError(f"{self.name}: a keypoint appears in more than one flip pair")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> list[int]:
        """``flip_indices[k]`` is the channel keypoint ``k`` becomes after a horizontal flip."""
        indices = list(range(self.num_keypoints))
        for left, right in self.flip_pairs:
            indices[left], indices[right] = right, left
        return indices

    @classmethod
    def from_coco_category(
        cls,
        category: Mapping[str, Any],
        sigmas: Sequence[float] | None = None,
        flip_pairs: Sequence[Sequence[int]] | None = None,
    ) -> "DatasetInfo":
        """Read names and skeleton (1-based in COCO files) from a COCO ``categories`` entry.

        Flip pairs default to names that differ only by a ``left``/``right`` prefix; sigmas
        default to COCO's mean sigma for every keypoint.
        """
        if "keypoints" not in category:
            raise ValueError(f"category {category.get('name')!r} has no 'keypoints' list")
        names = tuple(category["keypoints"])
        skeleton = tuple((a - 1, b - 1) for a, b in category.get("skeleton", []))
        pairs = flip_pairs if flip_pairs is not None else _pairs_by_name(names)
        return cls(
            name=str(category.get("name", "custom")),
            keypoint_names=names,
            flip_pairs=tuple((int(a), int(b)) for a, b in pairs),
            skeleton=skeleton,
            sigmas=tuple(sigmas) if sigmas is not None else (0.05,) * len(names),
        )

    def to_coco_category(self, category_id: int = 1) -> dict[str, Any]:
        """The COCO ``categories`` entry for this keypoint set (skeleton 1-based)."""
        return {
            "id": category_id,
            "name": self.name,
            "supercategory": self.name,
            "keypoints": list(self.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton],
        }


def _pairs_by_name(names: Sequence[str]) -> list[tuple[int, int]]:
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        for left, right in (("left_", "right_"), ("left", "right"), ("l_", "r_")):
            if name.startswith(left) and right + name[len(left):] in index:
                pairs.append((i, index[right + name[len(left):]]))
                break
    return pairs


COCO17 = DatasetInfo(
    name="person",
    keypoint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
        (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=(
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
        0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    ),
)
