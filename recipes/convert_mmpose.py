"""Convert an MMPose 1.x checkpoint into keras-pose weights.

    python recipes/convert_mmpose.py CHECKPOINT --model rsn50 --out rsn50.weights.h5

``--model`` is one of ``rsn18``, ``rsn50``, ``2xrsn50``, ``3xrsn50``, ``mspn50``, ``2xmspn50``,
``3xmspn50``, ``4xmspn50``, ``cpm`` (256x192; ``--input-size 384 288`` for the 384x288 config)
and ``hourglass52`` (256x256; ``--input-size 384 384``). CHECKPOINT is the ``.pth`` from
MMPose's model zoo (state dict at the top level or under ``"state_dict"``; reading it needs
PyTorch: ``pip install 'keras-pose[torch]'``) or an ``.npz`` of the same keys. Every tensor must
map one-to-one onto the ``variant="mmpose"`` model, otherwise the unmatched keys and shapes are
listed and nothing is written. Load the result with the same builder, e.g.
``keras_pose.models.RSN50(variant="mmpose", weights="rsn50.weights.h5")``, or pass
``--keras-out rsn50.keras`` to also get a whole model for ``recipes/eval_coco.py --keras`` and
``recipes/predict.py --keras``. The model takes the **RGB** crop (``model.spec.channel_order``)
and normalises it inside; its spec carries MMPose's codec convention, so ``Predictor``,
``recipes/eval_coco.py``, the exports and ``recipes/infer.py`` decode its heatmaps as MMPose does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SIZES = {"cpm": (256, 192), "hourglass52": (256, 256)}


def build_mmpose_graph(name: str, input_size: Sequence[int]) -> object:
    """The keras-pose model of MMPose's graph for ``--model`` (every builder takes
    ``variant``; Hourglass-52 exists only as MMPose's)."""
    from keras_pose.models import build_model

    return build_model(name, input_shape=(*input_size, 3), variant="mmpose", compile=False)


MODEL_NAMES = (
    "rsn18", "rsn50", "2xrsn50", "3xrsn50", "4xrsn50",
    "mspn50", "2xmspn50", "3xmspn50", "4xmspn50", "cpm", "hourglass52",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="MMPose .pth (or .npz of its state dict)")
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--out", required=True, help="output .weights.h5")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--keras-out", help="also write the whole model as .keras (for "
                        "recipes/eval_coco.py --keras and recipes/predict.py --keras)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from keras_pose.convert import WeightMappingError, read_torch_state_dict, save_weights_atomic
    from keras_pose.convert._files import save_model_atomic
    from keras_pose.convert.mmpose import load_mmpose_weights

    size = tuple(args.input_size or DEFAULT_SIZES.get(args.model, (256, 192)))
    try:
        state_dict = read_torch_state_dict(args.checkpoint)  # fail fast, before building
        model = build_mmpose_graph(args.model, size)
        count = load_mmpose_weights(model, state_dict, description=args.checkpoint)
    except (WeightMappingError, FileNotFoundError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_weights_atomic(model, args.out)
    if args.keras_out:
        save_model_atomic(model, args.keras_out)
    print(f"{args.checkpoint}: {count} variables -> {args.out} ({model.name}, "
          f"{model.spec.channel_order} input {size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
