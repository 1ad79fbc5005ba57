"""Draw the poses of the people in an image, given their boxes.

    python recipes/predict.py IMAGE --boxes x,y,w,h [--boxes ...]
        [--model rsn18 | --keras FILE] [--weights FILE] [--out out.png] [--no-flip-test]

Example: ``python recipes/predict.py street.jpg --boxes 120,40,90,260 --model rsn18
--weights rsn18.weights.h5 --out street_pose.png``. Without ``--boxes`` the whole image is one
box. Prints each person's keypoints (x, y in image pixels, the family's original score and the
confidence on one 0..1 scale) and writes the drawing; ``--score-threshold`` compares the
confidence (CPN/MSPN/RSN's original score is ``peak / 255 + 0.5``, above 0.5 even on an empty
crop). A file that is not a readable image is an error naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_pose.models import MODELS  # noqa: E402
from keras_pose.utils.cli import check_files_exist, check_writable, unit_float  # noqa: E402


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
    parser.add_argument("--keypoints-from", metavar="FILE",
                        help="keypoint info file (json: keypoints, flip_pairs, skeleton, "
                             "sigmas) or COCO annotation file whose keypoint set the model "
                             "predicts (default: COCO-17)")
    parser.add_argument("--out", default="out.png", help="PNG to write (default: out.png)")
    parser.add_argument("--no-flip-test", "--no-flip", dest="no_flip", action="store_true",
                        help="skip the flip test (on by default when the family used it)")
    parser.add_argument("--score-threshold", type=unit_float, default=0.3,
                        help="draw keypoints whose confidence (0..1, on every family's scale) "
                             "is at least this (default 0.3)")
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

    from keras_pose.data.coco import BadImageError
    from keras_pose.inference import Predictor, draw_skeleton, save_png
    from keras_pose.inference.predictor import load_image

    check_files_exist({"image": args.image, "--keras": args.keras, "--weights": args.weights,
                       "--keypoints-from": args.keypoints_from})
    check_writable(args.out, "--out")
    try:
        image = load_image(args.image)
    except BadImageError as error:
        raise SystemExit(f"error: {error}") from None
    boxes = np.array(args.boxes or [[0.0, 0.0, image.shape[1], image.shape[0]]])
    model = load_model(args)
    dataset_info = None
    if args.keypoints_from:
        from keras_pose.data.dataset_info import load_keypoint_info

        dataset_info = load_keypoint_info(args.keypoints_from)
    predictor = Predictor(model, dataset_info, flip_test=False if args.no_flip else None)
    poses = predictor(image, boxes)
    confident = predictor.confidences(poses)
    drawing = draw_skeleton(image, confident, predictor.dataset_info, args.score_threshold)
    save_png(args.out, drawing)
    names = predictor.dataset_info.keypoint_names
    for person, pose in enumerate(poses):
        print(f"person {person} (box {boxes[person].tolist()}):")
        for name, (x, y, score), confidence in zip(names, pose, confident[person, :, 2]):
            print(f"  {name:>16s}  x={x:8.1f}  y={y:8.1f}  score={score:.3f}  "
                  f"confidence={confidence:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
