"""Export a keras-pose model to TF Serving (SavedModel), LiteRT (TFLite) and/or ONNX.

    python recipes/export.py --format saved_model|litert|onnx|all
        [--model rsn18 | --keras FILE] [--weights FILE] [--input-size H W]
        [--quantize float16|int8] [--out DIR] [--name NAME --version N]
        [--calibration ANN_FILE IMAGE_DIR] [--decode] [--no-flip-test] [--keypoints-from FILE]

Examples::

    python recipes/export.py --format saved_model --model rsn18 --weights rsn18.weights.h5
    python recipes/export.py --format all --keras runs/cpn50/best.keras --name cpn50 --version 3
    python recipes/export.py --format litert --model 2xmspn50 --quantize int8 \\
        --calibration annotations/person_keypoints_val2017.json val2017

Layout under ``--out`` (default ``savedmodels``): ``<name>/<version>/`` (the SavedModel, as TF
Serving expects; ``models.config`` gains an entry for ``<name>``), ``<name>/<name>.tflite``
(``-float16`` / ``-int8`` suffix when quantized) and ``<name>/<name>.onnx``. Every file is
checked against the Keras model before it is moved into place. int8 needs calibration crops:
``--calibration ANN_FILE IMAGE_DIR`` (COCO format, un-augmented crops of its boxes), else a small
synthetic set is generated (enough to try the path, not to deploy).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMATS = ("saved_model", "litert", "onnx")
DEFAULT_MODEL = "rsn18"


def build_parser() -> argparse.ArgumentParser:
    from keras_pose.utils.cli import positive_int

    parser = argparse.ArgumentParser(
        description="Export a keras-pose model, checked against Keras."
    )
    parser.add_argument("--format", choices=(*FORMATS, "all"), default="saved_model")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="build this architecture: a keras_pose.models.MODELS name "
                        "(cpn50, cpn101, mspn50, 2xmspn50, rsn18, rsn50, cpm, hourglass, ...; "
                        "default rsn18)")
    source.add_argument("--keras", metavar="FILE", help="a saved .keras keras-pose model")
    parser.add_argument("--weights", metavar="FILE", help=".weights.h5 file to load")
    parser.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="crop size of a built --model (default: the family's)")
    parser.add_argument("--quantize", choices=("float16", "int8"), help="LiteRT quantization")
    parser.add_argument("--calibration", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"),
                        help="COCO data whose box crops calibrate int8")
    parser.add_argument("--num-calibration", type=positive_int, default=64,
                        help="int8 calibration crops")
    parser.add_argument("--decode", action="store_true",
                        help="LiteRT: also output keypoints and scores decoded on the device")
    parser.add_argument("--allow-non-gpu-ops", action="store_true",
                        help="write a .tflite even if an op is outside the GPU delegate's list")
    parser.add_argument("--out", default="savedmodels", help="output folder (default savedmodels)")
    parser.add_argument("--name", help="model name (default: --model, or the model's name)")
    parser.add_argument("--version", type=positive_int, default=1,
                        help="SavedModel version (default 1)")
    parser.add_argument("--no-flip-test", "--no-flip", dest="no_flip", action="store_true",
                        help="no flip test in predict_image")
    parser.add_argument("--keypoints-from", metavar="FILE",
                        help="keypoint info file (json: keypoints, flip_pairs, ...) or COCO "
                             "annotation file giving the left/right pairs (default COCO-17)")
    return parser


def check_inputs(args: argparse.Namespace) -> None:
    """Input files exist, --name is usable and --out is writable, before anything is built."""
    from keras_pose.utils.cli import check_files_exist, check_writable

    calibration = args.calibration or (None, None)
    check_files_exist({"--keras": args.keras, "--weights": args.weights,
                       "--keypoints-from": args.keypoints_from,
                       "--calibration ANN_FILE": calibration[0]})
    if calibration[1] is not None and not os.path.isdir(calibration[1]):
        raise SystemExit(f"error: --calibration IMAGE_DIR {calibration[1]}: no such folder")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise SystemExit(f"error: --name {args.name!r}: use letters, digits, '_', '-' or '.'")
    check_writable(args.out, "--out", directory=True)


def load_model(args: argparse.Namespace):
    """The model of ``--keras`` or ``--model`` (+ ``--input-size``), with ``--weights``."""
    from keras_pose.models import load_model as load_pose_model

    if not args.keras and not args.weights:
        print("warning: exporting random weights (no --weights given)", file=sys.stderr)
    shape = None if args.input_size is None else (*args.input_size, 3)
    return load_pose_model(args.keras or args.model or DEFAULT_MODEL, args.weights, shape)


def calibration_data(model, args: argparse.Namespace):
    """Un-augmented crops for int8 calibration: ``--calibration`` data, else synthetic people."""
    from keras_pose.data import build_dataset

    if args.calibration:
        ann_file, image_dir = args.calibration
        return build_dataset(model, ann_file, image_dir, batch_size=8, training=False)
    from keras_pose.data.synthetic import make_coco_layout

    if model.spec.num_keypoints != 17:
        raise SystemExit(
            f"int8 calibration of a {model.spec.num_keypoints}-keypoint model needs "
            "--calibration ANN_FILE IMAGE_DIR (the synthetic people have COCO's 17 keypoints)"
        )
    print("note: calibrating int8 on synthetic people (pass --calibration for real data)")
    folder = tempfile.mkdtemp(prefix="keras_pose_calibration_")
    num_val = max(8, args.num_calibration // 2)
    paths = make_coco_layout(folder, num_train=1, num_val=num_val)["val2017"]
    return build_dataset(
        model, paths["annotation_file"], paths["image_dir"], batch_size=8, training=False
    )


def flip_indices(model, args: argparse.Namespace):
    """``(flip, flip_indices)`` for ``predict_image``."""
    if args.no_flip or not model.spec.flip_test:
        return False, None
    if args.keypoints_from:
        from keras_pose.data.dataset_info import load_keypoint_info

        return True, load_keypoint_info(args.keypoints_from).flip_indices
    if model.spec.num_keypoints != 17:
        print("warning: no --keypoints-from for a non-COCO model: predict_image without flip test",
              file=sys.stderr)
        return False, None
    return True, None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pose import export

    check_inputs(args)
    model = load_model(args)
    name = args.name or args.model or model.name
    folder = os.path.join(args.out, name)
    formats = FORMATS if args.format == "all" else (args.format,)
    written = []
    if "saved_model" in formats:
        flip, indices = flip_indices(model, args)
        written.append(export.saved_model(
            model, folder, version=args.version, flip_test=flip, flip_indices=indices
        ))
        written.append(export.add_to_models_config(args.out, name))
    if "litert" in formats:
        suffix = f"-{args.quantize}" if args.quantize else ""
        data = calibration_data(model, args) if args.quantize == "int8" else None
        written.append(
            export.litert(
                model, os.path.join(folder, f"{name}{suffix}.tflite"), args.quantize, data,
                decode=args.decode, num_calibration=args.num_calibration,
                require_gpu_compatible=not args.allow_non_gpu_ops,
            )
        )  # fmt: skip
    if "onnx" in formats:
        written.append(export.onnx(model, os.path.join(folder, f"{name}.onnx")))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
