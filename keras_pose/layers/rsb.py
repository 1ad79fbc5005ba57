"""RSN's Residual Steps Block: four branches of 3x3 steps joined into a lattice.

The block is the ``Bottleneck`` class of the RSN code (expansion 1). With ``bc`` the branch
width, a 1x1 conv (carrying the stride) widens the input to ``4*bc`` channels, which are split
into ``s1..s4``. Branch ``k`` runs ``k`` conv-BN-ReLU 3x3 steps; the input of step ``t`` of
branch ``k`` is the previous step of the same branch (or ``s_k`` for the first step) plus step
``t`` of branch ``k-1`` when that branch has one::

    y11 = f(s1)
    y21 = f(s2 + y11);  y22 = f(y21)
    y31 = f(s3 + y21);  y32 = f(y31 + y22);  y33 = f(y32)
    y41 = f(s4 + y31);  y42 = f(y41 + y32);  y43 = f(y42 + y33);  y44 = f(y43)

The last step of every branch is concatenated, projected by a 1x1 conv + BN (no ReLU) to
``filters``, added to the shortcut, then ReLU.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.layers.conv_bn import ConvBN
from keras_pose.layers.residual_unit import ResidualUnit

NUM_BRANCHES = 4


def branch_width(in_channels: int) -> int:
    """The RSN code's branch width ``bc = in_channels * 26 // 64`` (from the block's input)."""
    return in_channels * 26 // 64


def split_channels(x, parts: int, training=None) -> list[Any]:
    """``x`` cut into ``parts`` equal channel groups.

    Training uses one split, whose gradient is one concatenation; static slices would each
    backpropagate a full-size zero tensor (``StridedSliceGrad``) to be summed. Inference keeps
    the static slices, which every runtime runs (TFLite's SPLIT is not on the GPU delegate's op
    list). Both give the same values.
    """
    if training:
        return ops.split(x, parts, axis=-1)
    width = x.shape[-1] // parts
    return [x[..., i * width:(i + 1) * width] for i in range(parts)]


@keras.saving.register_keras_serializable(package="keras_pose")
class ResidualStepsBlock(ResidualUnit):
    """The Residual Steps Block (RSB) of RSN, exactly as the released code wires it.

    The branch width comes from the block's **input** width (``in*26//64``), so the first
    block of a layer, which still sees the previous layer's width, is narrower than the rest.
    The shortcut is a 1x1 conv (with the stride) + BN when the width or the stride changes,
    the identity otherwise.

    Args:
        filters: output channels (``planes``; expansion 1).
        strides: stride of the first 1x1 conv and of the projection shortcut.
        use_bias: conv bias (True in the RSN code, even before BN).
        **kwargs: the other conv options of :class:`~keras_pose.layers.ConvBNBlock`
            (``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``)
            and the base layer's (``name``, ``dtype``).
    """

    def __init__(
        self, filters: int, strides: int = 1, use_bias: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(filters, strides, use_bias=use_bias, **kwargs)
        self.branch_filters: int | None = None
        self.expand = None
        self.steps: list[list[ConvBN]] = []
        self.project = None

    def build(self, input_shape) -> None:
        in_channels = int(input_shape[-1])
        bc = branch_width(in_channels)
        if bc < 1:
            raise ValueError(f"{self.name}: input width {in_channels} gives an empty branch (bc=0)")
        self.branch_filters = bc
        self.expand = self.conv_bn(NUM_BRANCHES * bc, 1, self.strides, "relu", "expand")
        self.expand.build(input_shape)
        step_shape = self.expand.compute_output_shape(input_shape)[:-1] + (bc,)
        self.steps = []
        for k in range(1, NUM_BRANCHES + 1):
            branch = [self.conv_bn(bc, 3, 1, "relu", f"step{k}_{t}") for t in range(1, k + 1)]
            for step in branch:
                step.build(step_shape)
            self.steps.append(branch)
        self.project = self.conv_bn(self.filters, 1, 1, None, "project")
        self.project.build(step_shape[:-1] + (NUM_BRANCHES * bc,))
        self.build_shortcut(input_shape)

    def branch_outputs(self, inputs, training=None) -> list[list[Any]]:
        """Every step's output, ``[[y11], [y21, y22], [y31, y32, y33], [y41, ..., y44]]``."""
        expanded = self.expand(inputs, training=training)
        splits = split_channels(expanded, NUM_BRANCHES, training)
        outputs: list[list[Any]] = []
        previous_branch: list[Any] = []
        for split, branch in zip(splits, self.steps):
            steps = []
            for t, step in enumerate(branch):
                x = split if t == 0 else steps[t - 1]
                if t < len(previous_branch):
                    x = x + previous_branch[t]
                steps.append(step(x, training=training))
            outputs.append(steps)
            previous_branch = steps
        return outputs

    def call(self, inputs, training=None):
        branches = self.branch_outputs(inputs, training=training)
        x = ops.concatenate([steps[-1] for steps in branches], axis=-1)
        x = self.project(x, training=training)
        return self.add_shortcut(x, inputs, training=training)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.strides != 1:
            h = None if h is None else (h - 1) // self.strides + 1
            w = None if w is None else (w - 1) // self.strides + 1
        return (n, h, w, self.filters)
