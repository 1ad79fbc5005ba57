"""FLOPs counter: exact on single convs, and CPN-50 against the originals' analytic figure."""

import keras
import pytest

from keras_pose.layers import BilinearUpsample, ConvBN
from keras_pose.models.cpn import CPNModel
from keras_pose.utils.flops import flops


def single_layer_model(layer, input_shape=(32, 24, 5)):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def test_conv_counts_two_flops_per_multiply_accumulate():
    model = single_layer_model(keras.layers.Conv2D(7, 3, padding="same", use_bias=False))
    assert flops(model) == 2 * 32 * 24 * 3 * 3 * 5 * 7
    assert flops(model, batch_size=3) == 3 * flops(model)


def test_strided_conv_bias_and_batch_norm_add_per_element_work():
    macs = 16 * 12 * 3 * 3 * 5 * 7  # stride 2: 16x12 outputs
    with_bias = single_layer_model(keras.layers.Conv2D(7, 3, strides=2, padding="same"))
    assert flops(with_bias) == 2 * macs + 16 * 12 * 7  # + one BiasAdd per output element
    conv_bn = single_layer_model(ConvBN(7, 3, strides=2))
    extra = flops(conv_bn) - 2 * macs
    # inference BN is x * a + b: two per output element, plus a handful per channel
    assert 2 * 16 * 12 * 7 <= extra <= 2 * 16 * 12 * 7 + 10 * 7


def test_resize_counts_nothing():
    assert flops(single_layer_model(BilinearUpsample((64, 48)))) == 0


def test_cpn50_matches_the_analytic_count():
    # docs/provenance.md#counts: 7.23 GMACs at 256x192 (convolutions only); tf-cpn's graph
    # is 14.6 GFLOPs. BN, biases and residual sums add well under 1 %.
    gflops = flops(CPNModel(depth=50)) / 1e9
    assert 2 * 7.23 * 0.995 < gflops < 2 * 7.23 * 1.015
    assert gflops == pytest.approx(14.6, rel=0.015)
