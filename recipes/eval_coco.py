"""COCO keypoint AP of a keras-pose model.

    python recipes/eval_coco.py --model cpn50 --weights cpn50.weights.h5 --data-dir /data/coco
    python recipes/eval_coco.py --keras work_dirs/cpn50/best.keras --data-dir /data/coco \
        --det-file /data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json

``--data-dir`` is a COCO layout: ``annotations/person_keypoints_val2017.json`` and ``val2017/``.
Without it, the synthetic COCO-format validation split is rendered (once) into
``--synthetic-dir`` and evaluated, so the recipe runs on a fresh machine.

Without ``--det-file`` the ground-truth boxes are used (score 1). The protocol of the published
numbers is val2017 with a person detector of human AP 56.4 (MMPose) or 55.3 (tf-cpn minival) and
flip test; NMS and person rescoring default to the family's original protocol (see
:mod:`keras_pose.evaluation.evaluate`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_pose.models import MODELS  # noqa: E402
from keras_pose.utils.cli import (  # noqa: E402
    check_files_exist,
    check_writable,
    finite_float,
    positive_float,
    positive_int,
)

logger = logging.getLogger("eval_coco")

DEFAULT_SYNTHETIC_DIR = os.path.join("work_dirs", "synthetic")
SYNTHETIC_VAL_IMAGES = 200


def load_model(args: argparse.Namespace):
    """The ``--keras`` file, or ``--model`` built (at ``--input-size``) with ``--weights``."""
    from keras_pose.models import load_model as load_pose_model

    if not (args.keras or args.model):
        raise SystemExit("give --model NAME (with --weights FILE) or --keras FILE")
    if args.model and args.weights is None:
        logger.warning("no --weights or --keras: evaluating an untrained %s", args.model)
    shape = None if args.input_size is None else (*args.input_size, 3)
    try:
        return load_pose_model(args.keras or args.model, args.weights, shape)
    except (FileNotFoundError, ValueError, TypeError) as error:
        raise SystemExit(str(error)) from error


def dataset_paths(args: argparse.Namespace) -> dict[str, str]:
    """Annotation file and image folder of the split to evaluate."""
    if args.data_dir is None:
        from keras_pose.data.synthetic import VAL_IMAGE_ID_OFFSET, make_coco_dataset

        paths = make_coco_dataset(args.synthetic_dir, args.synthetic_images, seed=0,
                                  split="val2017", image_id_offset=VAL_IMAGE_ID_OFFSET)
        logger.info("synthetic dataset in %s (detections: %s)", paths["root"],
                    paths["detection_file"])
        return {"annotation_file": paths["annotation_file"], "image_dir": paths["image_dir"]}
    paths = {
        "annotation_file": os.path.join(args.data_dir, "annotations",
                                        f"person_keypoints_{args.split}.json"),
        "image_dir": os.path.join(args.data_dir, args.split),
    }
    for path in paths.values():
        if not os.path.exists(path):
            raise SystemExit(f"{path} not found: --data-dir must be a COCO layout")
    return paths


def check_inputs(args: argparse.Namespace) -> None:
    """Everything the evaluation will need, checked before the model is loaded or an image
    predicted: input files exist, outputs are writable."""
    check_files_exist({"--keras": args.keras, "--weights": args.weights,
                       "--det-file": args.det_file, "--keypoints-from": args.keypoints_from})
    for flag, path in (("--out", args.out), ("--metrics-json", args.metrics_json)):
        if path is not None:
            check_writable(path, flag)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), help="architecture to build")
    parser.add_argument("--weights", help=".weights.h5 file for --model")
    parser.add_argument("--keras", help="a saved .keras model (replaces --model/--weights)")
    parser.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="input size of --model (default: the builder's)")
    parser.add_argument("--data-dir", help="COCO layout root (default: the synthetic dataset)")
    parser.add_argument("--split", default="val2017")
    parser.add_argument("--det-file", help="person detections (COCO results json); "
                                           "default: ground-truth boxes")
    parser.add_argument("--keypoints-from", metavar="FILE",
                        help="keypoint info file (json: keypoints, flip_pairs, skeleton, "
                             "sigmas) or COCO annotation file (default: the split's category)")
    parser.add_argument("--default-sigma", type=positive_float,
                        help="OKS sigma of every keypoint when the keypoint set has none "
                             "(otherwise such a set is refused)")
    parser.add_argument("--det-score-threshold", type=finite_float, default=0.0)
    parser.add_argument("--no-flip-test", "--no-flip", dest="no_flip", action="store_true",
                        help="disable the flip test (on by default where the family used it)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--nms", default="auto", choices=["auto", "none", "oks", "soft_oks"])
    parser.add_argument("--nms-threshold", type=positive_float, default=0.9)
    parser.add_argument("--max-images", type=positive_int, help="only the first N images (by id)")
    parser.add_argument("--out", help="results json to write (default: a temporary folder)")
    parser.add_argument("--metrics-json", help="also write the metrics to this json file")
    parser.add_argument("--synthetic-dir", default=DEFAULT_SYNTHETIC_DIR)
    parser.add_argument("--synthetic-images", type=positive_int, default=SYNTHETIC_VAL_IMAGES)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run_evaluation(model, paths: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate_coco`` of ``model`` on the split, with the flags' settings."""
    from keras_pose.evaluation import evaluate_coco

    return evaluate_coco(
        model,
        paths["annotation_file"],
        paths["image_dir"],
        det_file=args.det_file,
        det_score_threshold=args.det_score_threshold,
        flip_test=False if args.no_flip else None,
        batch_size=args.batch_size,
        nms=args.nms,
        nms_threshold=args.nms_threshold,
        results_file=args.out,
        max_images=args.max_images,
        progress=not args.no_progress,
        dataset_info=keypoint_info(args),
        default_sigma=args.default_sigma,
    )


def keypoint_info(args: argparse.Namespace):
    """The ``--keypoints-from`` keypoint set, or ``None`` (the split's own)."""
    if args.keypoints_from is None:
        return None
    from keras_pose.data.dataset_info import load_keypoint_info

    return load_keypoint_info(args.keypoints_from)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the evaluation, print the table, return the metrics dict of ``evaluate_coco``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    from keras_pose.evaluation import format_metrics

    check_inputs(args)
    model = load_model(args)
    paths = dataset_paths(args)
    try:
        metrics = run_evaluation(model, paths, args)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    print(metrics["table"])
    print(format_metrics(metrics))
    if metrics["skipped_images"]:
        print(f"skipped {len(metrics['skipped_images'])} unreadable image(s) (their people "
              f"count as missed): {', '.join(metrics['skipped_images'][:5])}")
    print(f"{metrics['num_results']} poses on {metrics['num_images']} images "
          f"({metrics['num_boxes']} boxes, nms={metrics['nms']}, "
          f"flip_test={not args.no_flip and model.spec.flip_test}); "
          f"results: {metrics['results_file']}")
    if args.metrics_json:
        from keras_pose.utils.atomic import write_json

        write_json(metrics, args.metrics_json)
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
