"""Keyword-spotting model zoo: one registry of builders used by every script.

Every builder takes the fingerprint settings, the integers of
`--model_size_info` and the number of labels (keyword-only label_count), and
returns an uncompiled tf.keras model whose input is the flattened fingerprint
(spectrogram_length x dct_coefficient_count floats) and whose output is a
softmax over label_count labels.

The architectures are those of "Hello Edge: Keyword Spotting on
Microcontrollers" (Zhang et al., 2017, https://arxiv.org/abs/1711.07128) with
the `--model_size_info` layouts of Arm's training scripts. dnn, cnn, ds_cnn and
basic_lstm create their weighted layers in the same order and with the same
shapes as Arm's TF2 builders, so Arm's published weight checkpoints load into
them with `model.load_weights`. Recurrent layers are unrolled over the
spectrogram_length time steps, so that the TFLite converter turns them into
builtin ops that int8 post-training quantization supports.

TensorFlow is imported when a model is first built, not with this module: the
deployment tools read its flags and need no TensorFlow.
"""
from __future__ import annotations

import argparse
import dataclasses
import numbers
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from kws import macs, tf_env
from kws.cli import UsageError
from kws.features import ModelSettings
from kws.models import zoo_30k as kws30k

tf = tf_env.lazy_tensorflow()

# Arm trained with no dropout: its TF1 scripts fed a keep probability of 1.0
# and its TF2 builders use Dropout(rate=0). The Dropout layers are kept where
# the paper's models have them, so that training with dropout is a one-line change.
DROPOUT_RATE = 0.0


def _fingerprint_input(model_settings: ModelSettings) -> tf.Tensor:
    return tf.keras.Input(shape=(model_settings.fingerprint_size,), name="input")


def _spectrogram(fingerprint: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """The flattened fingerprint as a sequence: (time, dct coefficients)."""
    return tf.keras.layers.Reshape(
        (model_settings.spectrogram_length, model_settings.dct_coefficient_count))(fingerprint)


def _spectrogram_image(fingerprint: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """The flattened fingerprint as a one-channel image: (time, dct coefficients, 1)."""
    return tf.keras.layers.Reshape(
        (model_settings.spectrogram_length, model_settings.dct_coefficient_count, 1))(fingerprint)


def _label_scores(x: tf.Tensor, label_count: int) -> tf.Tensor:
    return tf.keras.layers.Dense(label_count, activation="softmax")(x)


def _valid_conv2d(x: tf.Tensor, conv_size_info: Sequence[int], architecture: str,
                  **kwargs) -> tf.Tensor:
    """A VALID-padded Conv2D from (filters, kernel time, kernel frequency, stride time,
    stride frequency); raises UsageError where the kernel is larger than its input."""
    filters, kernel_time, kernel_frequency, stride_time, stride_frequency = conv_size_info
    input_time, input_frequency = x.shape[1:3]
    if kernel_time > input_time or kernel_frequency > input_frequency:
        raise UsageError(f"--model_size_info for {architecture}: a {kernel_time} x "
                         f"{kernel_frequency} convolution kernel does not fit its "
                         f"{input_time} x {input_frequency} input")
    return tf.keras.layers.Conv2D(filters, (kernel_time, kernel_frequency),
                                  strides=(stride_time, stride_frequency), padding="valid",
                                  **kwargs)(x)


def _gru_stack(x: tf.Tensor, layer_count: int, units: int) -> tf.Tensor:
    """layer_count unrolled GRU layers; returns the last layer's final output."""
    for layer in range(layer_count):
        x = tf.keras.layers.GRU(units, return_sequences=layer < layer_count - 1,
                                unroll=True)(x)
    return x


def create_single_fc_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """One fully-connected layer from the fingerprint to the labels.

    model_size_info: empty.
    """
    fingerprint = _fingerprint_input(model_settings)
    return tf.keras.Model(fingerprint, _label_scores(fingerprint, label_count),
                          name="single_fc")


def create_dnn_model(model_settings: ModelSettings,
                     model_size_info: Sequence[int], *,
                     label_count: int) -> tf.keras.Model:
    """Fully-connected ReLU layers on the flattened fingerprint.

    model_size_info: the units of each hidden layer, one integer per layer.
    """
    fingerprint = _fingerprint_input(model_settings)
    x = fingerprint
    for units in model_size_info:
        x = tf.keras.layers.Dense(units, activation="relu")(x)
        x = tf.keras.layers.Dropout(DROPOUT_RATE)(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="dnn")


def create_cnn_model(model_settings: ModelSettings,
                     model_size_info: Sequence[int], *,
                     label_count: int) -> tf.keras.Model:
    """Two convolutions, a linear bottleneck layer and a fully-connected layer.

    model_size_info (12 integers):
      0-4: first convolution: filters, kernel height (time), kernel width
           (frequency), stride in time, stride in frequency;
      5-9: second convolution, the same five;
      10: units of the linear layer (no activation);
      11: units of the fully-connected ReLU layer.
    Convolutions use VALID padding and, like the fully-connected layer, batch norm.
    """
    fingerprint = _fingerprint_input(model_settings)
    x = _spectrogram_image(fingerprint, model_settings)
    for conv_size_info in (model_size_info[0:5], model_size_info[5:10]):
        x = _valid_conv2d(x, conv_size_info, "cnn")
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.ReLU()(x)
        x = tf.keras.layers.Dropout(DROPOUT_RATE)(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(model_size_info[10])(x)
    x = tf.keras.layers.Dense(model_size_info[11])(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.Dropout(DROPOUT_RATE)(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="cnn")


def create_ds_cnn_model(model_settings: ModelSettings,
                        model_size_info: Sequence[int], *,
                        label_count: int) -> tf.keras.Model:
    """Depthwise-separable CNN: a convolution, then depthwise + pointwise convolutions.

    model_size_info: the number of layers N, then for each of the N layers five
    integers: filters, kernel time, kernel frequency, stride in time, stride in
    frequency. Layer 0 is a standard convolution; every other layer is a
    depthwise convolution with its kernel and strides followed by a 1x1
    convolution with its filters. All use SAME padding, each is followed by
    batch norm and ReLU; an average pool over the remaining time x frequency
    feeds the output layer. (Arm's TF2 builder passes the depthwise strides as
    (frequency, time); its published configurations use equal strides there.)
    """
    fingerprint = _fingerprint_input(model_settings)
    x = _spectrogram_image(fingerprint, model_settings)
    for layer in range(model_size_info[0]):
        filters, kernel_time, kernel_frequency, stride_time, stride_frequency = (
            model_size_info[1 + 5 * layer:6 + 5 * layer])
        kernel = (kernel_time, kernel_frequency)
        strides = (stride_time, stride_frequency)
        if layer == 0:
            x = tf.keras.layers.Conv2D(filters, kernel, strides=strides, padding="same")(x)
        else:
            x = tf.keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="same")(x)
            x = tf.keras.layers.BatchNormalization()(x)
            x = tf.keras.layers.ReLU()(x)
            x = tf.keras.layers.Conv2D(filters, (1, 1))(x)
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = tf.keras.layers.Flatten()(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="ds_cnn")


def create_basic_lstm_model(model_settings: ModelSettings,
                            model_size_info: Sequence[int], *,
                            label_count: int) -> tf.keras.Model:
    """An LSTM (no peepholes, no projection) over the MFCC frames; its last output is classified.

    model_size_info: [LSTM units].
    """
    fingerprint = _fingerprint_input(model_settings)
    x = _spectrogram(fingerprint, model_settings)
    x = tf.keras.layers.LSTM(model_size_info[0], unroll=True)(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="basic_lstm")


def create_lstm_model(model_settings: ModelSettings,
                      model_size_info: Sequence[int], *,
                      label_count: int) -> tf.keras.Model:
    """An LSTM with peepholes and an output projection (ProjectionLSTMCell).

    model_size_info: [projection units, LSTM units].
    """
    projection_units, units = model_size_info
    fingerprint = _fingerprint_input(model_settings)
    x = _spectrogram(fingerprint, model_settings)
    from kws.models.lstm_cell import ProjectionLSTMCell

    x = tf.keras.layers.RNN(ProjectionLSTMCell(units, projection_units), unroll=True)(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="lstm")


def create_gru_model(model_settings: ModelSettings,
                     model_size_info: Sequence[int], *,
                     label_count: int) -> tf.keras.Model:
    """Stacked GRU layers over the MFCC frames; the last layer's final output is classified.

    model_size_info: [number of GRU layers, GRU units per layer].
    """
    layer_count, units = model_size_info
    fingerprint = _fingerprint_input(model_settings)
    x = _gru_stack(_spectrogram(fingerprint, model_settings), layer_count, units)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="gru")


def create_crnn_model(model_settings: ModelSettings,
                      model_size_info: Sequence[int], *,
                      label_count: int) -> tf.keras.Model:
    """A convolution, stacked GRU layers over its output frames, and a fully-connected layer.

    model_size_info (8 integers):
      0-4: convolution: filters, kernel height (time), kernel width (frequency),
           stride in time, stride in frequency (VALID padding, ReLU);
      5: number of GRU layers; 6: GRU units per layer;
      7: units of the fully-connected ReLU layer.
    """
    gru_layer_count, gru_units, fc_units = model_size_info[5:]
    fingerprint = _fingerprint_input(model_settings)
    x = _spectrogram_image(fingerprint, model_settings)
    x = _valid_conv2d(x, model_size_info[:5], "crnn", activation="relu")
    x = tf.keras.layers.Dropout(DROPOUT_RATE)(x)
    x = tf.keras.layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)
    x = _gru_stack(x, gru_layer_count, gru_units)
    x = tf.keras.layers.Dense(fc_units, activation="relu")(x)
    x = tf.keras.layers.Dropout(DROPOUT_RATE)(x)
    return tf.keras.Model(fingerprint, _label_scores(x, label_count), name="crnn")


def create_bc_resnet_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """BC-ResNet (kws/models/bc_resnet.py, imported here: its SubSpectralNorm layer imports TensorFlow).

    model_size_info: [base_channels]: 8 is BC-ResNet-1, 16 BC-ResNet-2.
    """
    from kws.models import bc_resnet

    return bc_resnet.create_bc_resnet_model(model_settings, model_size_info,
                                            label_count=label_count)


def _one_or_more(model_size_info: Sequence[int]) -> int:
    return max(1, len(model_size_info))


def _ds_cnn_length(model_size_info: Sequence[int]) -> int:
    layer_count = model_size_info[0] if model_size_info else 1
    return 1 + 5 * layer_count


class Builder(Protocol):
    """An architecture's builder: fingerprint settings, --model_size_info and label count
    to an uncompiled model."""

    def __call__(self, model_settings: ModelSettings, model_size_info: Sequence[int], *,
                 label_count: int) -> tf.keras.Model:
        ...


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A registered architecture: its builder and its --model_size_info layout."""

    builder: Builder
    layout: str  # what the integers of --model_size_info mean, for messages
    default_size_info: Tuple[int, ...]  # the paper's Small configuration
    # How many integers a given size list must have; None: as many as the default.
    expected_length: Optional[Callable[[Sequence[int]], int]] = None


_CONV_LAYOUT = "filters, kernel time, kernel frequency, stride time, stride frequency"

MODELS: Dict[str, Architecture] = {
    "single_fc": Architecture(create_single_fc_model, "no integers", ()),
    "dnn": Architecture(create_dnn_model,
                        "units of each hidden fully-connected layer, one per layer",
                        (144, 144, 144), _one_or_more),
    "cnn": Architecture(create_cnn_model,
                        f"conv1: {_CONV_LAYOUT}; conv2: the same five; "
                        "linear layer units; fc units",
                        (28, 10, 4, 1, 1, 30, 10, 4, 2, 1, 16, 128)),
    "ds_cnn": Architecture(create_ds_cnn_model,
                           f"number of layers, then per layer: {_CONV_LAYOUT}",
                           (5, 64, 10, 4, 2, 2, 64, 3, 3, 1, 1, 64, 3, 3, 1, 1,
                            64, 3, 3, 1, 1, 64, 3, 3, 1, 1), _ds_cnn_length),
    "basic_lstm": Architecture(create_basic_lstm_model, "LSTM units", (118,)),
    "lstm": Architecture(create_lstm_model, "projection units, LSTM units", (98, 144)),
    "gru": Architecture(create_gru_model, "number of GRU layers, GRU units", (1, 154)),
    "crnn": Architecture(create_crnn_model,
                         f"conv: {_CONV_LAYOUT}; number of GRU layers; GRU units; fc units",
                         (48, 10, 4, 2, 2, 2, 60, 84)),
    # Google's kws_streaming 30k-parameter zoo; defaults are its published configurations.
    "svdf": Architecture(kws30k.create_svdf_model, kws30k.SVDF_LAYOUT,
                         (4, 10, 10, 10, 10, 10, 16, 32, 32, 32, 64, 128, 40, 40, 64, 64, 64),
                         kws30k.svdf_length),
    "svdf_resnet": Architecture(kws30k.create_svdf_resnet_model, kws30k.SVDF_RESNET_LAYOUT,
                                (1, 1, 2, 7, 32, 7, 50, 11, 50, 11, 128, 2, 2, 1, 64),
                                kws30k.svdf_resnet_length),
    "tc_resnet": Architecture(kws30k.create_tc_resnet_model, kws30k.TC_RESNET_LAYOUT,
                              (3, 32, 36, 36, 40), kws30k.tc_resnet_length),
    "mobilenet": Architecture(kws30k.create_mobilenet_model, kws30k.MOBILENET_LAYOUT,
                              (32, 3, 2, 3, 2, 32, 3, 2, 64, 3, 1, 128, 3, 1, 128),
                              kws30k.mobilenet_length),
    "mobilenet_v2": Architecture(kws30k.create_mobilenet_v2_model, kws30k.MOBILENET_V2_LAYOUT,
                                 (32, 3, 2, 3, 1, 32, 150, 3, 2, 32, 150, 3, 1, 64, 150,
                                  3, 1, 64, 150), kws30k.mobilenet_v2_length),
    "inception": Architecture(kws30k.create_inception_model, kws30k.INCEPTION_LAYOUT,
                              (32, 5, 1, 16, 32, 3, 2, 16, 64, 5, 2, 16, 70, 5, 1),
                              kws30k.inception_length),
    "inception_resnet": Architecture(kws30k.create_inception_resnet_model,
                                     kws30k.INCEPTION_RESNET_LAYOUT,
                                     (32, 5, 1, 20, 16, 16, 32, 3, 2, 50, 16, 16, 32, 5, 2,
                                      100, 32, 32, 64, 5, 1), kws30k.inception_resnet_length),
    "xception": Architecture(kws30k.create_xception_model, kws30k.XCEPTION_LAYOUT,
                             (2, 1, 1, 5, 16, 5, 32, 7, 40, 7, 64, 11, 100, 2, 2, 1, 1, 64),
                             kws30k.xception_length),
    # Broadcasted residual learning (Kim et al., 2021): BC-ResNet-1, for 40 log-mel bands.
    "bc_resnet": Architecture(create_bc_resnet_model,
                              "base_channels (8: BC-ResNet-1, 16: BC-ResNet-2, 8 x tau: "
                              "BC-ResNet-tau)", (8,)),
}


def _check_size_info(model_architecture: str, model_size_info: Sequence[int]) -> None:
    """Raises UsageError unless model_size_info fits the architecture's layout."""
    architecture = MODELS[model_architecture]
    given = " ".join(str(value) for value in model_size_info)
    if any(not isinstance(value, numbers.Integral) or value <= 0 for value in model_size_info):
        raise UsageError(f"--model_size_info for {model_architecture} takes positive integers "
                         f"({architecture.layout}), got {given}")
    expected = (architecture.expected_length(model_size_info) if architecture.expected_length
                else len(architecture.default_size_info))
    if len(model_size_info) != expected:
        plural = "" if expected == 1 else "s"
        raise UsageError(f"--model_size_info for {model_architecture} needs {expected} "
                         f"integer{plural} ({architecture.layout}), "
                         f"got {len(model_size_info)}")


def create_model(model_settings: ModelSettings, model_architecture: str,
                 model_size_info: Optional[Sequence[int]] = None, *,
                 label_count: int) -> tf.keras.Model:
    """Builds a registered architecture for label_count labels; model_size_info None means
    its default size."""
    if model_architecture not in MODELS:
        raise UsageError(f"unknown --model_architecture {model_architecture!r}; "
                         f"known: {', '.join(MODELS)}")
    architecture = MODELS[model_architecture]
    if model_size_info is None:
        model_size_info = architecture.default_size_info
    model_size_info = tuple(model_size_info)
    _check_size_info(model_architecture, model_size_info)
    return architecture.builder(model_settings, model_size_info, label_count=label_count)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Adds --model_architecture and --model_size_info, as in Arm's scripts."""
    parser.add_argument(
        "--model_architecture", default="dnn",
        choices=MODELS,  # the registry itself: architectures registered later count too
        help="What model architecture to use")
    parser.add_argument(
        "--model_size_info", type=int, nargs="*", default=None,
        help="Model dimensions, laid out differently for each architecture (see "
             "models.MODELS); None: the architecture's Small configuration from the "
             "Hello Edge paper")


def summary_line(model: tf.keras.Model, architecture: str,
                 model_size_info: Optional[Sequence[int]]) -> str:
    """Parameters and multiply-accumulates per inference, in one line."""
    return (f"Model {architecture} {' '.join(map(str, model_size_info or []))}: "
            f"{count_parameters(model):,} parameters, "
            f"{count_macs(model):,} multiply-accumulates per inference")


def model_figures(model: tf.keras.Model) -> dict:
    """Parameters and (where countable) multiply-accumulates, for reports."""
    figures = {"parameters": count_parameters(model)}
    try:
        figures["macs"] = count_macs(model)
    except ValueError:
        pass
    return figures


def count_parameters(model: tf.keras.Model) -> int:
    """Number of weights of the deployed model.

    All weights, trainable or not, except those of BatchNormalization layers,
    which deployment folds into the preceding convolution or dense layer. A
    bc_resnet SubSpectralNorm, which does not fold, counts its scale and offset
    per sub-band and channel (its batch norm's gamma and beta).
    """
    from kws.models.bc_resnet import SubSpectralNorm

    modules = model.submodules
    batch_norm_weights = {id(weight) for module in modules
                          if isinstance(module, tf.keras.layers.BatchNormalization)
                          for weight in module.weights}
    sub_band_weights = sum(module.norm.gamma.shape.num_elements() * 2 for module in modules
                           if isinstance(module, SubSpectralNorm))
    return sub_band_weights + sum(weight.shape.num_elements() for weight in model.weights
                                  if id(weight) not in batch_norm_weights)


def count_macs(model: tf.keras.Model) -> int:
    """Multiply-accumulates of one inference (one clip), from the built model's shapes.

    Dense and convolution layers count one MAC per weight (bias excluded) per
    output position; recurrent layers count their cell's matrix multiplies
    once per time step. Element-wise operations, activations and pooling count
    nothing, nor does batch norm (folded at deployment, or bc_resnet's sub-spectral
    norm: a multiply and an add per value). This is kws/macs.py's rule, which the
    .tflite report follows too. Raises ValueError for a layer with weights of a
    type it does not know.
    """
    return sum(_layer_macs(layer) for layer in model.layers)


def _layer_macs(layer: tf.keras.layers.Layer) -> int:
    from kws.models.bc_resnet import SubSpectralNorm

    if isinstance(layer, tf.keras.Model):
        return count_macs(layer)
    layers = tf.keras.layers
    if not layer.weights or isinstance(layer, (layers.BatchNormalization, SubSpectralNorm)):
        return 0
    if isinstance(layer, layers.Dense):
        return macs.weighted([layer.kernel.shape], _positions(layer, layer.output_shape))
    if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose)):
        return macs.weighted([layer.kernel.shape], _positions(layer, layer.input_shape))
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.DepthwiseConv1D,
                          layers.DepthwiseConv2D, layers.SeparableConv1D, layers.SeparableConv2D)):
        kernels = [weight.shape for weight in layer.weights if weight.shape.rank > 1]
        return macs.weighted(kernels, _positions(layer, layer.output_shape))
    if isinstance(layer, tf.keras.layers.RNN):
        return macs.weighted(_cell_matrices(layer.cell), _time_steps(layer))
    if isinstance(layer, tf.keras.layers.Bidirectional):
        matrices = (_cell_matrices(layer.forward_layer.cell) +
                    _cell_matrices(layer.backward_layer.cell))
        return macs.weighted(matrices, _time_steps(layer))
    raise ValueError(f"count_macs does not know layer {layer.name!r} of type "
                     f"{type(layer).__name__}")


def _positions(layer: tf.keras.layers.Layer, shape: Tuple[Optional[int], ...]) -> int:
    """The positions of one clip's tensor of the layer (shape: batch first): its size
    without batch and channels."""
    shape = shape[1:]
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        shape = shape[1:] + shape[:1]
    return macs.positions(shape)


def _time_steps(layer: tf.keras.layers.Layer) -> int:
    steps = layer.input_shape[1]
    if steps is None:
        raise ValueError(f"count_macs needs a fixed number of time steps for {layer.name!r}")
    return steps


def _cell_matrices(cell: tf.keras.layers.Layer) -> List[tf.TensorShape]:
    """The shapes of the matrices that one step of a recurrent cell multiplies by."""
    from kws.models.lstm_cell import ProjectionLSTMCell

    if isinstance(cell, tf.keras.layers.StackedRNNCells):
        return [shape for inner in cell.cells for shape in _cell_matrices(inner)]
    if isinstance(cell, (tf.keras.layers.LSTMCell, tf.keras.layers.GRUCell,
                         tf.keras.layers.SimpleRNNCell)):
        matrices = [cell.kernel, cell.recurrent_kernel]
    elif isinstance(cell, ProjectionLSTMCell):
        matrices = [cell.kernel, cell.recurrent_kernel, cell.projection_kernel]
    else:
        raise ValueError(f"count_macs does not know recurrent cell {cell.name!r} of type "
                         f"{type(cell).__name__}")
    return [matrix.shape for matrix in matrices]
