"""Convert an original tf-cpn TF1 checkpoint into keras-pose weights.

    python recipes/convert_tfcpn.py CKPT_PREFIX --model cpn50 --out cpn50.weights.h5
        [--input-size 256 192] [--num-keypoints 17]

``CKPT_PREFIX`` is the checkpoint prefix (``snapshot_350.ckpt``, without ``.index``). Use
``--model cpn101`` for the ResNet-101 models and ``--input-size 384 288`` for the 384x288 ones
(the weights are the same shapes; the size only selects the model's spec). The checkpoint is
read with ``tf.train.load_checkpoint``; every variable must map one-to-one, otherwise the
unmatched names and shapes are listed and nothing is written. Load the result with
``keras_pose.models.CPN50(input_shape=(256, 192, 3), weights="cpn50.weights.h5")``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEPTHS = {"cpn50": 50, "cpn101": 101}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="tf-cpn checkpoint prefix (no .index)")
    parser.add_argument("--model", choices=sorted(DEPTHS), default="cpn50")
    parser.add_argument("--out", required=True, help="output .weights.h5")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--num-keypoints", type=int, default=17)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from keras_pose.convert import (
        WeightMappingError,
        load_tfcpn_weights,
        read_tf_checkpoint,
        save_weights_atomic,
    )
    from keras_pose.models.cpn import CPNModel

    try:
        tensors = read_tf_checkpoint(args.checkpoint)  # fail fast, before building the model
        model = CPNModel(
            depth=DEPTHS[args.model],
            input_shape=(*args.input_size, 3),
            num_keypoints=args.num_keypoints,
        )
        count = load_tfcpn_weights(model, tensors, description=args.checkpoint)
    except (WeightMappingError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_weights_atomic(model, args.out)
    print(f"{args.checkpoint}: {count} variables -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
