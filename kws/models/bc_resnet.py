"""BC-ResNet: broadcasted residual learning for keyword spotting, in tf-keras layers.

Kim, Chang, Lee, Sung: "Broadcasted Residual Learning for Efficient Keyword
Spotting" (Interspeech 2021, https://arxiv.org/abs/2106.04140), with the block
structure of Qualcomm AI Research's reference code (bcresnet.py). A block
works on [time, frequency, channels] in two parts: a frequency-depthwise
convolution with sub-spectral normalization (f2, two-dimensional), then, on
the frequency average of that, a temporal-depthwise convolution, batch norm,
swish, a 1x1 convolution and channel dropout (f1, one-dimensional), whose
output is broadcast over frequency and added to f2's (the auxiliary residual)
and, in a block that keeps its channels, to the block's input.

The published configuration reads 40 log-mel bands of 30 ms windows every
10 ms (--preprocess log_mel --dct_coefficient_count 40 --window_size_ms 30
--window_stride_ms 10: 98 frames). The frequency axis is halved three times
and split into 5 sub-bands at every stage, so --dct_coefficient_count must
halve to multiples of 5 (40 bands: 20, 10, 5).

For int8 TensorFlow Lite (and TFLM) every part is a builtin op: in inference
SubSpectralNorm is one MUL and one ADD of [frequency, channels] constants,
swish is LOGISTIC and MUL, the pools are AVERAGE_POOL_2D. This module imports
TensorFlow (SubSpectralNorm is a Keras layer); models.py imports it when a
bc_resnet is built.

Three layers compute the same function in training with other ops than in
inference, ops whose gradients TensorFlow runs faster on CPU (a training step
of BC-ResNet-1 at batch 100: bench/bench_bc_resnet_step.py). SubSpectralNorm
is a batch norm with its gradient written out in sums and row broadcasts of the
4-D input, instead of a Keras batch norm of two axes of it as 5-D (moments and
broadcasts that are slow on CPU, and more of them in the gradient);
FrequencyMean a reduce_mean instead of AvgPool; FullBandDepthwiseConv2D, whose
kernel spans all frequency bins, a depthwise convolution over time of the bins
as channels and a sum. Inference, and so conversion to TensorFlow Lite, keeps
the plain layers' ops; tests/scripts/test_bc_resnet.py pins each training path to the
plain formulation.
"""
import math
from typing import Callable, List, Sequence, Tuple

from kws import tf_env
from kws.cli import UsageError
from kws.features import ModelSettings

tf = tf_env.import_tensorflow()

SUB_BANDS = 5  # sub-spectral normalization groups of the frequency axis
STAGE_BLOCKS = (2, 2, 4, 4)  # blocks per stage; a stage's first block changes the channels
# Channels as multiples of base_channels: the head, the four stages, the classifier.
CHANNEL_MULTIPLIERS = (2, 1, 1.5, 2, 2.5, 4)
STRIDED_STAGES = (1, 2)  # stages whose first block halves the frequency axis
DROPOUT_RATE = 0.1  # channel dropout at the end of every block, as published


@tf.keras.utils.register_keras_serializable(package="kws")
class SubSpectralNorm(tf.keras.layers.Layer):
    """Batch norm of each (frequency sub-band, channel) pair (Chang et al., 2021).

    Input [batch, time, frequency, channels], frequency a multiple of sub_bands.
    `norm`, a BatchNormalization over axes 2 and 4 of the input reshaped to
    [batch, time, sub_bands, frequency / sub_bands, channels], holds the weights
    and moving statistics (training.recalibrate_batch_norm finds it). Training
    normalizes with the batch's statistics as that batch norm would and updates
    its moving statistics likewise, on the 4-D input (_batch_normalize).
    Inference computes x * scale + offset with scale and offset of shape
    [frequency, channels], each sub-band's values repeated over its bins: a
    broadcast MUL and ADD in TensorFlow Lite.
    """

    def __init__(self, sub_bands: int = SUB_BANDS, **kwargs):
        super().__init__(**kwargs)
        self.sub_bands = sub_bands
        self.norm = tf.keras.layers.BatchNormalization(axis=[2, 4], name="norm")

    def build(self, input_shape: tf.TensorShape) -> None:
        _, time, frequency, channels = input_shape
        if frequency % self.sub_bands:
            raise ValueError(f"SubSpectralNorm: {frequency} frequency bins do not split into "
                             f"{self.sub_bands} sub-bands")
        self.norm.build([None, time, self.sub_bands, frequency // self.sub_bands, channels])
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if training and self.norm.trainable:  # a frozen batch norm infers (Keras)
            return self._batch_normalize(inputs)
        norm = self.norm
        scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
        offset = norm.beta - norm.moving_mean * scale
        dtype = inputs.dtype  # the input's type (mixed precision)
        return inputs * tf.cast(self._per_bin(scale, inputs), dtype) + tf.cast(
            self._per_bin(offset, inputs), dtype)

    def _per_bin(self, values: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
        """Values of each (sub-band, channel) -> [frequency, channels] of inputs' bins (each
        sub-band's repeated): broadcast over [batch, time] like a row over a matrix."""
        frequency, channels = inputs.shape[2], inputs.shape[3]
        return tf.repeat(tf.reshape(values, [self.sub_bands, channels]),
                         frequency // self.sub_bands, axis=0)

    def _batch_normalize(self, inputs: tf.Tensor) -> tf.Tensor:
        """Training: normalizes with the batch's mean and (biased) variance of each (sub-band,
        channel) and moves `norm`'s statistics toward them by its momentum, as
        BatchNormalization(axis=[2, 4]) does, in float32, with batch norm's gradient written
        out: sums over time then batch (accurate float32 sums) and [frequency, channels] rows
        that multiply and add, rather than the broadcasts that differentiating it would make."""
        frequency, channels = inputs.shape[2], inputs.shape[3]
        bins = frequency // self.sub_bands
        norm = self.norm
        x = tf.cast(inputs, tf.float32)
        shape = tf.shape(x)
        count = tf.cast(shape[0] * shape[1] * bins, tf.float32)

        def band_sums(values: tf.Tensor) -> tf.Tensor:  # -> [sub_bands, channels]
            total = tf.reduce_sum(tf.reduce_sum(values, axis=1), axis=0)
            return tf.reduce_sum(tf.reshape(total, [self.sub_bands, bins, channels]), axis=1)

        @tf.custom_gradient
        def normalize(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor
                      ) -> Tuple[Tuple[tf.Tensor, tf.Tensor, tf.Tensor], Callable]:
            mean = band_sums(x) / count
            centered = x - self._per_bin(mean, x)
            variance = band_sums(tf.square(centered)) / count
            rstd = tf.math.rsqrt(variance + norm.epsilon)
            scale = gamma * rstd

            def gradient(dy: tf.Tensor, *_) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
                dbeta = band_sums(dy)  # (*_: the statistics' own, which only the averages read)
                dgamma = band_sums(dy * centered) * rstd
                dx = (dy * self._per_bin(scale, x)
                      + centered * self._per_bin(-scale * rstd * dgamma / count, x)
                      - self._per_bin(scale * dbeta / count, x))
                return dx, dgamma, dbeta

            y = centered * self._per_bin(scale, x) + self._per_bin(beta, x)
            return (y, mean, variance), gradient

        y, mean, variance = normalize(x, tf.reshape(norm.gamma, [self.sub_bands, channels]),
                                      tf.reshape(norm.beta, [self.sub_bands, channels]))
        for moving, batch in ((norm.moving_mean, mean), (norm.moving_variance, variance)):
            moving.assign_sub((moving - tf.reshape(batch, moving.shape)) * (1 - norm.momentum))
        return tf.cast(y, inputs.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "sub_bands": self.sub_bands}


@tf.keras.utils.register_keras_serializable(package="kws")
class FrequencyMean(tf.keras.layers.AveragePooling2D):
    """AveragePooling2D that, in training, when it pools all frequency bins (pool_size and
    strides (1, frequency): [time, frequency, channels] -> [time, 1, channels]), is a
    reduce_mean (AvgPoolGrad is slower)."""

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if training and self.pool_size == self.strides == (1, inputs.shape[2]):
            return tf.reduce_mean(inputs, axis=2, keepdims=True)
        return super().call(inputs)


@tf.keras.utils.register_keras_serializable(package="kws")
class FullBandDepthwiseConv2D(tf.keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D that, in training, when its kernel spans every frequency bin (VALID,
    stride 1, depth multiplier 1: [time, frequency, channels] -> [time', 1, channels]),
    convolves [time, 1, frequency x channels] over time, the kernel's columns as channels,
    and sums the bins (the gradient of the 2-D depthwise kernel is slower)."""

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        taps, width = self.kernel_size
        _, _, frequency, channels = inputs.shape
        if not (training and width == frequency and self.padding == "valid"
                and self.strides == self.dilation_rate == (1, 1) and self.depth_multiplier == 1):
            return super().call(inputs)
        shape = tf.shape(inputs)
        columns = tf.reshape(inputs, [shape[0], shape[1], 1, frequency * channels])
        kernel = tf.reshape(self.depthwise_kernel, [taps, 1, frequency * channels, 1])
        y = tf.nn.depthwise_conv2d(columns, kernel, [1, 1, 1, 1], "VALID")
        y = tf.reduce_sum(tf.reshape(y, [shape[0], -1, frequency, channels]), 2, keepdims=True)
        return self.activation(tf.nn.bias_add(y, self.bias) if self.use_bias else y)


def _conv_bn_relu(x: tf.Tensor, layer: tf.keras.layers.Layer) -> tf.Tensor:
    x = tf.keras.layers.BatchNormalization()(layer(x))
    return tf.keras.layers.ReLU()(x)


def _block(x: tf.Tensor, channels: int, stage: int, frequency_stride: int) -> tf.Tensor:
    """One BC-ResBlock; a transition block (channels change) has a 1x1 convolution first and
    no identity shortcut."""
    layers = tf.keras.layers
    transition = x.shape[-1] != channels
    shortcut = x
    if transition:
        x = _conv_bn_relu(x, layers.Conv2D(channels, 1, use_bias=False))
    # f2: frequency-depthwise 3x1 convolution (the paper's frequency x time; here time is first).
    x = layers.DepthwiseConv2D((1, 3), strides=(1, frequency_stride), padding="same",
                               use_bias=False)(x)
    auxiliary = SubSpectralNorm()(x)
    # f1, on the frequency average: temporal-depthwise dilated 1x3 convolution, BN, swish, 1x1.

    x = FrequencyMean(pool_size=(1, auxiliary.shape[2]))(auxiliary)
    x = layers.DepthwiseConv2D((3, 1), dilation_rate=(2 ** stage, 1), padding="same",
                               use_bias=False)(x)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))  # LOGISTIC, MUL in TFLite
    x = layers.Conv2D(channels, 1, use_bias=False)(x)
    x = layers.SpatialDropout2D(DROPOUT_RATE)(x)
    # f1's [T, 1, C] broadcast over f2's frequency bins, and the identity shortcut.
    x = layers.Add()([x, auxiliary] if transition else [x, auxiliary, shortcut])
    return layers.ReLU()(x)


def stage_frequencies(frequency: int) -> List[int]:
    """The frequency bins of each stage's blocks, from the fingerprint's: the head and the
    strided stages halve them (SAME padding: rounding up)."""
    frequency = math.ceil(frequency / 2)
    bins = []
    for stage in range(len(STAGE_BLOCKS)):
        if stage in STRIDED_STAGES:
            frequency = math.ceil(frequency / 2)
        bins.append(frequency)
    return bins


def create_bc_resnet_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """BC-ResNet over the fingerprint as [time, frequency, 1].

    model_size_info: [base_channels]; 8 is BC-ResNet-1 (about 9k parameters),
    16 BC-ResNet-2, 8 x tau BC-ResNet-tau. Channels per part: base x (2, 1, 1.5,
    2, 2.5, 4), rounded down. With 40 frequency bins and base 8 (B: batch,
    T: frames; [time, frequency, channels]):

        fingerprint [B, T * 40]
              |  reshape
        [T, 40, 1]
              |  head: 5x5 conv, stride 2 in frequency, BN, ReLU
        [T, 20, 16]
              |  stage 0: 2 blocks, dilation 1
        [T, 20, 8]
              |  stage 1: 2 blocks, stride 2 in frequency, dilation 2
        [T, 10, 12]
              |  stage 2: 4 blocks, stride 2 in frequency, dilation 4
        [T, 5, 16]
              |  stage 3: 4 blocks, dilation 8
        [T, 5, 20]
              |  classifier: depthwise 5x5 (VALID in frequency, SAME in time),
              |  1x1 conv, BN, ReLU
        [T, 1, 32]
              |  average pool over time
        [32]  ->  dense, softmax  ->  [label_count]

    A block, [T, F, C] (a stage's first block changes the channels: a 1x1 conv, BN
    and ReLU first, and no identity shortcut):

        x ------------------------------------------------+
        |  f2: depthwise conv, 3 bins of frequency         |
        |      (stride 2 in a strided stage's first block) |
        |      SubSpectralNorm: 5 sub-bands x C            |
        aux [T, F, C] -----------------------+             |
        |  average pool over frequency        |             |
        |  f1: [T, 1, C] depthwise conv,      |             |
        |      3 frames, dilation 2^stage     |             |
        |      BN, swish, 1x1 conv,           |             |
        |      channel dropout (0.1)          |             |
        + <---- broadcast over frequency -----+             |
        + <------------------------------------------------+  (identity)
        |  ReLU
    """
    (base_channels,) = model_size_info
    frames, frequency = model_settings.spectrogram_length, model_settings.dct_coefficient_count
    bins = stage_frequencies(frequency)
    if any(count % SUB_BANDS for count in bins):
        raise UsageError(f"--dct_coefficient_count {frequency} does not fit bc_resnet: its "
                         f"stages split {', '.join(map(str, bins))} frequency bins into "
                         f"{SUB_BANDS} sub-bands; use a multiple of 40, such as 40")
    channels = [int(base_channels * multiplier) for multiplier in CHANNEL_MULTIPLIERS]
    layers = tf.keras.layers
    fingerprint = tf.keras.Input(shape=(model_settings.fingerprint_size,), name="input")
    x = layers.Reshape((frames, frequency, 1))(fingerprint)
    x = _conv_bn_relu(x, layers.Conv2D(channels[0], 5, strides=(1, 2), padding="same",
                                       use_bias=False))
    for stage, blocks in enumerate(STAGE_BLOCKS):
        for block in range(blocks):
            stride = 2 if stage in STRIDED_STAGES and block == 0 else 1
            x = _block(x, channels[stage + 1], stage, stride)
    x = layers.ZeroPadding2D(((2, 2), (0, 0)))(x)
    x = FullBandDepthwiseConv2D(5, padding="valid", use_bias=False)(x)
    x = _conv_bn_relu(x, layers.Conv2D(channels[-1], 1, use_bias=False))
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = layers.Flatten()(x)
    scores = layers.Dense(label_count, activation="softmax")(x)
    return tf.keras.Model(fingerprint, scores, name="bc_resnet")
