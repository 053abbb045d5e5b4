"""tfmot_adapter: every tfmot and Keras behaviour it relies on, pinned on tiny layers.

Each test fails if tensorflow-model-optimization (or tf-keras) changes what
the adapter assumes: which layers it prunes, clusters and quantizes, what a
pruning wrapper holds and how its masks apply, where pruning-preserving QAT
keeps its sparsity masks, how the moving-average quantizers move their
ranges, and how a layer finds the layer that feeds it.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from kws.optimization import tfmot_adapter

layers = tf.keras.layers


def built(layer, shape):
    """layer, built for inputs of shape (without the batch axis)."""
    layer.build((None, *shape))
    return layer


def test_it_was_checked_against_the_installed_tfmot():
    assert tfmot_adapter.CHECKED_TFMOT_VERSION == tfmot.__version__


@pytest.mark.parametrize("layer, shape", [
    (layers.Dense(4), (8,)),
    (layers.Conv2D(4, 3), (6, 6, 2)),
])
def test_dense_and_conv2d_kernels_are_pruned_and_clustered(layer, shape):
    layer = built(layer, shape)
    assert tfmot_adapter.can_prune(layer) and tfmot_adapter.can_cluster(layer)
    wrapper = tfmot.sparsity.keras.prune_low_magnitude(
        layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0))
    wrapper.build((None, *shape))
    assert [weight.name for weight, _, _ in wrapper.pruning_vars] == [layer.kernel.name]


def test_depthwise_kernels_are_neither_pruned_nor_clustered():
    layer = built(layers.DepthwiseConv2D(3), (6, 6, 2))
    assert not tfmot_adapter.can_prune(layer) and not tfmot_adapter.can_cluster(layer)
    # tfmot wraps it all the same, and leaves its kernel alone: the reason to ask first.
    wrapper = tfmot.sparsity.keras.prune_low_magnitude(
        layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0))
    wrapper.build((None, 6, 6, 2))
    assert wrapper.pruning_vars == []


def test_layers_without_kernels_are_not_pruned_or_clustered():
    layer = built(layers.BatchNormalization(), (6,))
    assert not tfmot_adapter.can_prune(layer) and not tfmot_adapter.can_cluster(layer)


def test_recurrent_layers_with_built_in_cells_are_pruned_and_clustered():
    model = tf.keras.Sequential([layers.Input((5, 3)), layers.LSTM(4), layers.Dense(2)])
    assert tfmot_adapter.can_prune(model.layers[0]) and tfmot_adapter.can_cluster(model.layers[0])


class CustomCell(layers.Layer):
    state_size = 2

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 2))

    def call(self, inputs, states):
        output = tf.matmul(inputs, self.kernel) + states[0]
        return output, [output]


def test_recurrent_layers_with_a_custom_cell_are_not_pruned_or_clustered():
    model = tf.keras.Sequential([layers.Input((5, 3)), layers.RNN(CustomCell())])
    assert not tfmot_adapter.can_prune(model.layers[0])
    assert not tfmot_adapter.can_cluster(model.layers[0])


def test_clustering_a_dense_kernel_leaves_that_many_values():
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([layers.Input((16,)), layers.Dense(8)])
    clustered = tfmot.clustering.keras.cluster_weights(
        model, number_of_clusters=4,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)
    kernel = tfmot.clustering.keras.strip_clustering(clustered).layers[0].kernel.numpy()
    assert np.unique(kernel).size == 4


def pruned_dense_model():
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([layers.Input((8,)), layers.Dense(4), layers.ReLU()])
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


def test_a_pruning_wrapper_exposes_its_step_and_masks_which_apply_to_its_weights():
    model = pruned_dense_model()
    assert [tfmot_adapter.is_pruning_wrapper(layer) for layer in model.layers] == [True, True]
    assert not tfmot_adapter.is_pruning_wrapper(model.layers[0].layer)
    steps = tfmot_adapter.pruning_steps(model)
    assert len(steps) == 2 and int(steps[0].numpy()) == -1  # -1 until the training loop sets it
    for step in steps:
        step.assign(0)
    model(np.ones((2, 8), np.float32), training=True)  # a pruning step: the masks are computed
    assert int(steps[0].numpy()) == 1  # the wrapper counts the step it ran
    (kernel, mask, _), = model.layers[0].pruning_vars
    assert np.mean(mask.numpy() == 0) == 0.5
    kernel.assign(kernel + 1.0)  # a gradient step after the last masking
    tfmot_adapter.apply_pruning_masks(model)
    np.testing.assert_array_equal(kernel.numpy() == 0, mask.numpy() == 0)
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    np.testing.assert_array_equal(stripped.layers[0].kernel.numpy(), kernel.numpy())


def qat_model(model, scheme):
    with tfmot.quantization.keras.quantize_scope():
        return tfmot.quantization.keras.quantize_apply(
            tfmot.quantization.keras.quantize_annotate_model(model), scheme=scheme)


def test_pruning_preserving_qat_keeps_a_sparsity_mask_for_each_pruned_kernel():
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([layers.Input((8,)), layers.Dense(4), layers.Dense(2)])
    kernel = model.layers[0].kernel
    kernel.assign(kernel * (np.arange(32).reshape(8, 4) % 2))
    wrapped = qat_model(model, tfmot.quantization.keras.collab_opts.Default8BitPrunePreserveQuantizeScheme())
    dense = next(layer for layer in wrapped.layers if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
                 and layer.layer.name == model.layers[0].name)
    masks = tfmot_adapter.sparsity_masks(dense)
    quantized_kernel = next(weight for weight in dense.weights if weight.name.endswith("/kernel:0"))
    assert list(masks) == [quantized_kernel.ref()]
    np.testing.assert_array_equal(masks[quantized_kernel.ref()].numpy(), quantized_kernel.numpy() != 0)
    plain = qat_model(tf.keras.models.clone_model(model),
                      tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme())
    assert all(tfmot_adapter.sparsity_masks(layer) == {} for layer in plain.layers)


def relu_range(wrapped):
    """(min, max) of the ReLU output quantizer of a QAT model."""
    relu = next(layer for layer in wrapped.layers if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
                and isinstance(layer.layer, layers.ReLU))
    by_name = {weight.name.split("/")[-1].split(":")[0]: float(weight.numpy()) for weight in relu.weights}
    return by_name["output_min"], by_name["output_max"]


def test_batch_range_quantizers_set_the_ranges_of_one_pass_and_are_undone_after():
    model = tf.keras.Sequential([layers.Input((8,)), layers.ReLU()])
    wrapped = qat_model(model, tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme())
    batch = np.linspace(-2, 3, 16, dtype=np.float32).reshape(2, 8)
    step = 12 / 255  # the input's int8 step in its starting range [-6, 6]
    assert relu_range(wrapped) == (-6.0, 6.0)  # where tfmot starts every activation range
    with tfmot_adapter.batch_range_quantizers():
        wrapped(batch, training=True)
    low, high = relu_range(wrapped)
    assert low == 0.0 and abs(high - 3.0) <= step  # this batch's ReLU range, not -6 and 6
    wrapped(batch * 2, training=True)  # tfmot's moving average again: 0.999 of the old range
    low, high = relu_range(wrapped)
    assert low == 0.0 and high == pytest.approx(0.999 * 3.0 + 0.001 * 6.0, abs=step)
    with pytest.raises(RuntimeError):
        with tfmot_adapter.batch_range_quantizers():
            raise RuntimeError("interrupted")
    wrapped(batch * 2, training=True)
    assert relu_range(wrapped)[1] < 3.1  # undone after an error too


def test_the_feeding_layer_decides_whether_batch_norm_is_quantized():
    inputs = layers.Input((6, 6, 2))
    linear = layers.Conv2D(4, 3)(inputs)
    folded = layers.BatchNormalization()(linear)
    activated = layers.Conv2D(4, 1, activation="relu")(folded)
    unfolded = layers.BatchNormalization()(activated)
    first = layers.BatchNormalization()
    first(inputs)
    model = tf.keras.Model(inputs, unfolded)
    conv, batch_norm, relu_conv, other_batch_norm = model.layers[1:]
    assert tfmot_adapter.feeding_layer(batch_norm) is conv
    assert tfmot_adapter.feeding_layer(other_batch_norm) is relu_conv
    assert tfmot_adapter.can_quantize(batch_norm)
    assert not tfmot_adapter.can_quantize(other_batch_norm)  # after an activation: nothing to fold into
    assert isinstance(tfmot_adapter.feeding_layer(first), layers.InputLayer)
    assert not tfmot_adapter.can_quantize(first)  # right after the input
    assert tfmot_adapter.can_quantize(conv) and tfmot_adapter.can_quantize(relu_conv)


def test_recurrent_layers_have_no_qat_and_depthwise_convolutions_have():
    model = tf.keras.Sequential([layers.Input((5, 3)), layers.LSTM(4)])
    assert not tfmot_adapter.can_quantize(model.layers[0])
    assert tfmot_adapter.can_quantize(built(layers.DepthwiseConv2D(3), (6, 6, 2)))
