"""Draw the poses of the people in an image, given their boxes.

    python recipes/predict.py IMAGE --boxes x,y,w,h [--boxes ...]
        [--model rsn18 | --keras FILE] [--weights FILE] [--out out.png] [--no-flip-test]

Example: ``python recipes/predict.py street.jpg --boxes 120,40,90,260 --model rsn18
--weights rsn18.weights.h5 --out street_pose.png``. Without ``--boxes`` the whole image is one
box. Prints each person's keypoints (x, y, score in image pixels) and writes the drawing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_pose.models import MODELS  # noqa: E402


def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` -> four floats (an ``argparse`` type)."""
    parts = text.split(",")
    try:
        box = [float(p) for p in parts]
    except ValueError:
        box = []
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"a box is x,y,w,h (four numbers), got {text!r}")
    if box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"box {text!r} needs w > 0 and h > 0")
    return box


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict and draw human poses in IMAGE for the given person boxes.",
    )
    parser.add_argument("image", help="image file (anything cv2.imread reads)")
    parser.add_argument("--boxes", action="append", type=parse_box, default=[], metavar="X,Y,W,H",
                        help="a person box in image pixels; repeat for several people "
                             "(default: the whole image)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=sorted(MODELS),
                        help="build this architecture (use --weights for trained weights)")
    source.add_argument("--keras", metavar="FILE", help="a saved .keras keras-pose model")
    parser.add_argument("--weights", metavar="FILE",
                        help="weights file (.weights.h5) to load into the model")
    parser.add_argument("--keypoints-from", metavar="ANN_FILE",
                        help="COCO annotation file whose keypoint category (names, skeleton, "
                             "left/right pairs) the model predicts (default: COCO-17)")
    parser.add_argument("--out", default="out.png", help="PNG to write (default: out.png)")
    parser.add_argument("--no-flip-test", "--no-flip", dest="no_flip", action="store_true",
                        help="skip the flip test (on by default when the family used it)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="draw keypoints scoring at least this (default 0.3)")
    return parser


def load_model(args: argparse.Namespace):
    """The model named by ``--model``/``--keras``, with ``--weights`` loaded."""
    from keras_pose.models import load_model as load_pose_model

    if args.model and not args.weights:
        print(f"warning: {args.model} has random weights (no --weights given)", file=sys.stderr)
    return load_pose_model(args.keras or args.model, weights=args.weights)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from keras_pose.inference import Predictor, draw_skeleton, save_png
    from keras_pose.inference.predictor import load_image

    image = load_image(args.image)
    boxes = np.array(args.boxes or [[0.0, 0.0, image.shape[1], image.shape[0]]])
    model = load_model(args)
    dataset_info = None
    if args.keypoints_from:
        from keras_pose.data.coco import read_dataset_info

        dataset_info = read_dataset_info(args.keypoints_from)
    predictor = Predictor(model, dataset_info, flip_test=False if args.no_flip else None)
    poses = predictor(image, boxes)
    drawing = draw_skeleton(image, poses, predictor.dataset_info, args.score_threshold)
    save_png(args.out, drawing)
    names = predictor.dataset_info.keypoint_names
    for person, pose in enumerate(poses):
        print(f"person {person} (box {boxes[person].tolist()}):")
        for name, (x, y, score) in zip(names, pose):
            print(f"  {name:>16s}  x={x:8.1f}  y={y:8.1f}  score={score:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
