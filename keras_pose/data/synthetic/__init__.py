"""A synthetic COCO-format person keypoint dataset, rendered on the spot (no download).

:mod:`~keras_pose.data.synthetic.render` draws the images (articulated, textured, occluded
people with honest visibility); :mod:`~keras_pose.data.synthetic.dataset` writes them as a COCO
layout (:func:`make_coco_layout`) that every loader, evaluator and exporter reads like real COCO.
:mod:`~keras_pose.data.synthetic.video` moves those people across a still scene
(:func:`render_video`), for tracking tests, demos and benchmarks.
"""

from keras_pose.data.synthetic.dataset import (
    MANIFEST_NAME,
    VAL_IMAGE_ID_OFFSET,
    main,
    make_coco_dataset,
    make_coco_layout,
)
from keras_pose.data.synthetic.render import SyntheticExample, render_example
from keras_pose.data.synthetic.video import SyntheticVideo, render_video

__all__ = [
    "MANIFEST_NAME",
    "VAL_IMAGE_ID_OFFSET",
    "SyntheticExample",
    "SyntheticVideo",
    "main",
    "make_coco_dataset",
    "make_coco_layout",
    "render_example",
    "render_video",
]
