"""What a keypoint set is: names, left/right pairs, skeleton and OKS sigmas.

COCO-17 is built in (:data:`COCO17`); any other keypoint set is described with
:class:`DatasetInfo` directly, read from a COCO ``categories`` entry with
:meth:`DatasetInfo.from_coco_category`, or from a small JSON (or YAML) file with
:func:`load_keypoint_info`::

    {"name": "hand", "keypoints": ["wrist", "LeftTip", "RightTip"],
     "flip_pairs": [["LeftTip", "RightTip"]], "skeleton": [["wrist", "LeftTip"]],
     "sigmas": [0.03, 0.02, 0.02]}

Pairs are given by keypoint names (or 0-based indices). A COCO category may carry the same
``flip_pairs`` and ``sigmas`` keys beside its ``keypoints`` (its ``skeleton`` stays COCO's
1-based). Without flip pairs, left/right names are paired (``left_hand``, ``LeftHand``,
``hand_left``, ``l_hand``...); a sided name left unpaired is warned about once, loudly, as flip
augmentation and the flip test would then swap nothing for it. Without sigmas, ``sigmas`` is
``None``, and evaluation refuses to guess (:meth:`DatasetInfo.oks_sigmas`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A keypoint set.

    Args:
        name: dataset name.
        keypoint_names: K names, in channel order.
        flip_pairs: ``(left, right)`` index pairs swapped by a horizontal flip.
        skeleton: ``(a, b)`` 0-based index pairs drawn as limbs.
        sigmas: K per-keypoint OKS sigmas (COCO's ``kpt_oks_sigmas``), or ``None`` if unknown.
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if self.sigmas is not None:
            if len(self.sigmas) != k:
                raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
            if not all(float(v) > 0 for v in self.sigmas):
                raise ValueError(f"{self.name}: OKS sigmas must be > 0, got {list(self.sigmas)}")
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

    def oks_sigmas(self, default_sigma: float | None = None) -> tuple[float, ...]:
        """The OKS sigmas evaluation needs: ``sigmas``, else ``default_sigma`` for every
        keypoint if the user opted into one, else a ``ValueError`` saying how to give them."""
        if self.sigmas is not None:
            return self.sigmas
        if default_sigma is None:
            raise ValueError(
                f"keypoint set {self.name!r} has no OKS sigmas, which COCO AP and OKS-NMS need: "
                "give them ('sigmas' in a keypoint info file or the annotation file's category, "
                "--keypoints-from FILE), or opt into one value for all keypoints "
                "(--default-sigma 0.05, default_sigma=0.05)")
        if not float(default_sigma) > 0:
            raise ValueError(f"default_sigma must be > 0, got {default_sigma}")
        return (float(default_sigma),) * self.num_keypoints

    @classmethod
    def from_coco_category(
        cls,
        category: Mapping[str, Any],
        sigmas: Sequence[float] | None = None,
        flip_pairs: Sequence[Sequence[int | str]] | None = None,
    ) -> DatasetInfo:
        """Read names and skeleton (1-based in COCO files) from a COCO ``categories`` entry.

        Flip pairs: ``flip_pairs``, else the category's ``flip_pairs`` (names or 0-based
        indices), else left/right names (a sided name left unpaired is warned about). Sigmas:
        ``sigmas``, else the category's ``sigmas``, else ``None`` (unknown).
        """
        if "keypoints" not in category:
            raise ValueError(f"category {category.get('name')!r} has no 'keypoints' list")
        names = tuple(category["keypoints"])
        name = str(category.get("name", "custom"))
        skeleton = tuple((a - 1, b - 1) for a, b in category.get("skeleton", []))
        pairs = flip_pairs if flip_pairs is not None else category.get("flip_pairs")
        if pairs is None:
            pairs = pairs_by_name(names, name)
        sigmas = sigmas if sigmas is not None else category.get("sigmas")
        return cls(
            name=name,
            keypoint_names=names,
            flip_pairs=_index_pairs(pairs, names, name, "flip_pairs"),
            skeleton=skeleton,
            sigmas=None if sigmas is None else tuple(float(v) for v in sigmas),
        )

    def to_coco_category(self, category_id: int = 1) -> dict[str, Any]:
        """The COCO ``categories`` entry for this keypoint set (skeleton 1-based; with its
        ``flip_pairs`` and, when known, ``sigmas``, which :meth:`from_coco_category` reads)."""
        category = {
            "id": category_id,
            "name": self.name,
            "supercategory": self.name,
            "keypoints": list(self.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton],
            "flip_pairs": [list(pair) for pair in self.flip_pairs],
        }
        if self.sigmas is not None:
            category["sigmas"] = list(self.sigmas)
        return category


def load_keypoint_info(path: str | os.PathLike) -> DatasetInfo:
    """A keypoint set from a file: a keypoint info file (JSON, or YAML with PyYAML; see the
    module docstring), or a COCO annotation file (its keypoint category)."""
    from keras_pose.utils.files import read_json

    path = os.fspath(path)
    if path.endswith((".yaml", ".yml")):
        content = _read_yaml(path)
    else:
        content = read_json(path, "keypoint info file")
    if isinstance(content, Mapping) and "categories" in content:
        categories = [c for c in content["categories"] if "keypoints" in c]
        if len(categories) != 1:
            raise ValueError(f"{path}: expected exactly one keypoint category, found "
                             f"{[c.get('name') for c in categories]}")
        return DatasetInfo.from_coco_category(categories[0])
    if not isinstance(content, Mapping) or "keypoints" not in content:
        raise ValueError(f"{path}: a keypoint info file is an object with 'keypoints' (names) "
                         "and optional 'flip_pairs', 'skeleton', 'sigmas', 'name'")
    try:
        return _info_from_mapping(content)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def _info_from_mapping(content: Mapping[str, Any]) -> DatasetInfo:
    names = tuple(str(n) for n in content["keypoints"])
    name = str(content.get("name", "custom"))
    pairs = content.get("flip_pairs")
    sigmas = content.get("sigmas")
    return DatasetInfo(
        name=name,
        keypoint_names=names,
        flip_pairs=_index_pairs(pairs if pairs is not None else pairs_by_name(names, name),
                                names, name, "flip_pairs"),
        skeleton=_index_pairs(content.get("skeleton", []), names, name, "skeleton"),
        sigmas=None if sigmas is None else tuple(float(v) for v in sigmas),
    )


def _read_yaml(path: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError(f"reading {path} needs PyYAML (pip install pyyaml), or write it as "
                          "JSON") from None
    with open(path) as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from None


def _index_pairs(pairs, names: Sequence[str], set_name: str, what: str):
    """``(a, b)`` 0-based index pairs of pairs given by keypoint names or indices."""
    index = {n: i for i, n in enumerate(names)}
    result = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"{set_name}: {what} entry {pair!r} is not a pair")
        converted = []
        for item in pair:
            if isinstance(item, str):
                if item not in index:
                    raise ValueError(f"{set_name}: {what} names {item!r}, not a keypoint "
                                     f"({list(names)})")
                converted.append(index[item])
            else:
                converted.append(int(item))
        result.append(tuple(converted))
    return tuple(result)


_SIDED = (
    re.compile(r"^(left|right)[\s_\-.]*(?P<base>.+)$"),
    re.compile(r"^(?P<base>.+?)[\s_\-.]*(left|right)$"),
    re.compile(r"^(l|r)[\s_\-.]+(?P<base>.+)$"),
    re.compile(r"^(?P<base>.+?)[\s_\-.]+(l|r)$"),
)
_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _side_and_base(name: str) -> tuple[str, tuple[int, str]] | None:
    """``("l" or "r", (naming convention, name without its side))``, or ``None``."""
    lowered = name.lower()
    for convention, pattern in enumerate(_SIDED):
        match = pattern.match(lowered)
        if match:
            side = next(g for g in match.groups() if g in ("left", "right", "l", "r"))
            return side[0], (convention, re.sub(r"[\s_\-.]", "", match.group("base")))
    return None


def pairs_by_name(names: Sequence[str], set_name: str = "custom") -> list[tuple[int, int]]:
    """Left/right pairs of names that differ only by their side (``left_hand``/``right_hand``,
    ``LeftHand``/``RightHand``, ``hand_l``/``hand_r``...). A name that looks sided but finds
    no partner is warned about, once per keypoint set."""
    sides: dict[tuple[int, str], dict[str, int]] = {}
    sided = []
    for i, name in enumerate(names):
        found = _side_and_base(name)
        if found is not None:
            sides.setdefault(found[1], {})[found[0]] = i
            sided.append(i)
    pairs = sorted((p["l"], p["r"]) for p in sides.values() if set(p) == {"l", "r"})
    paired = {i for pair in pairs for i in pair}
    unpaired = [names[i] for i in sided if i not in paired]
    key = (set_name, tuple(names))
    if (unpaired or not pairs) and key not in _WARNED:
        _WARNED.add(key)
        problem = (f"no left/right partner found for {unpaired}" if unpaired
                   else "no left/right keypoint names to pair")
        logger.warning(
            "KEYPOINT SET %r: %s, so flip augmentation and the flip test swap no keypoints%s; "
            "if the set has left and right keypoints, give its flip pairs ('flip_pairs' in a "
            "keypoint info file or the annotation file's category, --keypoints-from FILE)",
            set_name, problem, " for those" if unpaired and pairs else "")
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
