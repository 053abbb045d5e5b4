"""The 30k-parameter model zoo of Google's kws_streaming, in plain tf-keras layers.

Reproduces the non-streaming (training and inference) graphs of
google-research/kws_streaming/models: svdf, svdf_resnet, tc_resnet, mobilenet,
mobilenet_v2, inception, inception_resnet and xception, with the published
configurations of kws_streaming/experiments/kws_experiments_30k_12_labels.md
as defaults. Only standard layers are used, so every model converts to a
full-int8 TFLite model made of builtin ops.

The flattened, time-major fingerprint is reshaped to [batch, time, 1, feature]
as kws_streaming does with expand_dims(axis=2): every convolution runs over
time only and the MFCC coefficients are its input channels. kws_streaming's
per-frame Dense layers (SVDF projections, svdf_resnet shortcuts) are 1x1
convolutions here: the same weights and arithmetic, but TFLite gets a plain
CONV_2D instead of FULLY_CONNECTED wrapped in dynamic-batch reshapes. The 30k
configurations train without dropout, so no Dropout layers are added.
TensorFlow is imported when a model is first built.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

from kws import tf_env
from kws.cli import UsageError
from kws.features import ModelSettings

tf = tf_env.lazy_tensorflow()

SVDF_LAYOUT = ("memory_size x N, units1 x N, units2 x (N-1) "
               "(N SVDF layers; the last one has no units2 projection)")
SVDF_RESNET_LAYOUT = ("n1, n2, n3, (memory_size, units1) x (n1+n2+n3), "
                      "pool1, pool2, pool3, dense_units")
TC_RESNET_LAYOUT = "kernel_size, first_conv_channels, block_channels x N"
MOBILENET_LAYOUT = "first_filters, first_kernel, first_stride, (kernel, stride, filters) x N"
MOBILENET_V2_LAYOUT = ("first_filters, first_kernel, first_stride, "
                       "(kernel, stride, filters, expansion_percent) x N")
INCEPTION_LAYOUT = ("first_filters, first_kernel, first_pool_stride, "
                    "(filters1, filters2, kernel, pool_stride) x N")
INCEPTION_RESNET_LAYOUT = ("first_filters, first_kernel, first_pool_stride, "
                           "(scale_percent, filters_branch0, filters_branch1, filters_branch2, "
                           "kernel, pool_stride) x N")
XCEPTION_LAYOUT = ("n2, n3, n4, first_kernel, first_filters, (kernel, filters) x (n2+n3+n4), "
                   "stride1, stride2, stride3, stride4, dense_units")


def _blocks(count: int, head: int, per_block: int) -> int:
    """The length of a layout of head integers then whole blocks of per_block, nearest to count."""
    return head + per_block * max(0, math.ceil((count - head) / per_block))


def svdf_length(info: Sequence[int]) -> int:
    return 3 * max(1, (len(info) + 1) // 3) - 1


def svdf_resnet_length(info: Sequence[int]) -> int:
    return 7 + 2 * sum(info[:3]) if len(info) >= 3 else 7


def tc_resnet_length(info: Sequence[int]) -> int:
    return max(2, len(info))


def mobilenet_length(info: Sequence[int]) -> int:
    return max(3, _blocks(len(info), 0, 3))


def mobilenet_v2_length(info: Sequence[int]) -> int:
    return _blocks(len(info), 3, 4)


inception_length = mobilenet_v2_length


def inception_resnet_length(info: Sequence[int]) -> int:
    return _blocks(len(info), 3, 6)


def xception_length(info: Sequence[int]) -> int:
    return 10 + 2 * sum(info[:3]) if len(info) >= 3 else 10


def _check_frames(net: tf.Tensor, needed: int, architecture: str) -> None:
    """Raises UsageError when a valid kernel or pool is longer than the time axis left."""
    frames = net.shape[1]
    if frames < needed:
        raise UsageError(f"{architecture} --model_size_info shrinks the time axis to {frames} "
                         f"frames before a kernel or pool of {needed}; use smaller kernels, "
                         "strides or memory sizes")


def _input(model_settings: ModelSettings) -> Tuple[tf.Tensor, tf.Tensor]:
    """The flat fingerprint input and its [batch, time, 1, feature] view."""
    fingerprint = tf.keras.Input(shape=(model_settings.fingerprint_size,), name="input")
    net = tf.keras.layers.Reshape(
        (model_settings.spectrogram_length, 1, model_settings.dct_coefficient_count))(fingerprint)
    return fingerprint, net


def _classifier(fingerprint: tf.Tensor, net: tf.Tensor, label_count: int) -> tf.keras.Model:
    """Adds the Dense softmax over the label_count labels and wraps the graph in a model."""
    output = tf.keras.layers.Dense(label_count, activation="softmax")(net)
    return tf.keras.Model(fingerprint, output)


def _svdf(net: tf.Tensor, memory_size: int, units1: int, architecture: str,
          activation: str = "relu", causal: bool = False, use_bias: bool = True,
          batch_norm: bool = False) -> tf.Tensor:
    """kws_streaming's Svdf layer, non-streaming, without units2 projection.

    A dense projection over features (a 1x1 convolution: the same weights as
    kws_streaming's Dense), then a depthwise 1-D convolution of length
    memory_size over time (DepthwiseConv2D with a (memory_size, 1) kernel),
    then optional batch norm and the activation.
    """
    net = tf.keras.layers.Conv2D(units1, 1, use_bias=False)(net)
    if causal:
        net = tf.keras.layers.ZeroPadding2D(((memory_size - 1, 0), (0, 0)))(net)
    _check_frames(net, memory_size, architecture)
    net = tf.keras.layers.DepthwiseConv2D((memory_size, 1), use_bias=use_bias)(net)
    if batch_norm:
        net = tf.keras.layers.BatchNormalization()(net)
    return tf.keras.layers.Activation(activation)(net)


def _max_pool(net: tf.Tensor, pool: int, stride: int, architecture: str) -> tf.Tensor:
    """Valid max pooling over time; a no-op when stride is 1."""
    if stride == 1:
        return net
    _check_frames(net, pool, architecture)
    return tf.keras.layers.MaxPooling2D((pool, 1), strides=(stride, 1))(net)


def _conv_bn(net: tf.Tensor, filters: int, kernel: int, scale: bool,
             padding: str = "same", activation: str = "relu",
             use_bias: bool = False) -> tf.Tensor:
    """kws_streaming utils.conv2d_bn: Conv2D over time, batch norm, activation."""
    net = tf.keras.layers.Conv2D(filters, (kernel, 1), padding=padding, use_bias=use_bias)(net)
    net = tf.keras.layers.BatchNormalization(scale=scale)(net)
    return tf.keras.layers.Activation(activation)(net)


def create_svdf_model(model_settings: ModelSettings,
                      model_size_info: Sequence[int], *,
                      label_count: int) -> tf.keras.Model:
    """SVDF stack (Alvarez & Park, arXiv:1812.02802), kws_streaming models/svdf.py.

    model_size_info: N memory sizes (time steps each layer's depthwise filter
    spans), N units1 (features after each layer's first projection), then N-1
    units2 (units of the biased projection after layers 1..N-1); the last layer
    has no units2 projection (kws_streaming's -1): the classifier follows it.
    Activations are relu and padding is valid (the 30k svdf flags), so the time
    axis shrinks by memory_size - 1 per layer; the remaining frames are
    flattened into the classifier.
    """
    architecture = "svdf"
    info = list(model_size_info)
    layers = (len(info) + 1) // 3
    memory_sizes, units1, units2 = info[:layers], info[layers:2 * layers], info[2 * layers:]
    fingerprint, net = _input(model_settings)
    for i in range(layers):
        net = _svdf(net, memory_sizes[i], units1[i], architecture)
        if i < layers - 1:
            net = tf.keras.layers.Conv2D(units2[i], 1)(net)
    net = tf.keras.layers.Flatten()(net)
    return _classifier(fingerprint, net, label_count)


def create_svdf_resnet_model(model_settings: ModelSettings,
                             model_size_info: Sequence[int], *,
                             label_count: int) -> tf.keras.Model:
    """Three residual blocks of SVDF layers, kws_streaming models/svdf_resnet.py.

    model_size_info: n1, n2, n3 (SVDF layers in blocks 1-3), then a
    (memory_size, units1) pair per SVDF layer in block order, then the max-pool
    size after each block (1 = none), then the units of the relu Dense layer
    before the classifier. As in the 30k flags, SVDF layers pad causally, have
    no depthwise bias, use batch norm with scale and relu except the last layer
    of a block, which is linear; each block adds a 1x1 + batch norm shortcut,
    then relu and pooling. The end is average pooling over time.
    """
    architecture = "svdf_resnet"
    info = list(model_size_info)
    counts, pairs = info[:3], info[3:-4]
    pools, dense_units = info[-4:-1], info[-1]
    fingerprint, net = _input(model_settings)
    layer = 0
    for count, pool in zip(counts, pools):
        residual = net
        for i in range(count):
            memory_size, units1 = pairs[2 * layer], pairs[2 * layer + 1]
            activation = "linear" if i == count - 1 else "relu"
            net = _svdf(net, memory_size, units1, architecture, activation=activation,
                        causal=True, use_bias=False, batch_norm=True)
            layer += 1
        residual = tf.keras.layers.Conv2D(net.shape[-1], 1, use_bias=False)(residual)
        residual = tf.keras.layers.BatchNormalization()(residual)
        net = tf.keras.layers.Add()([net, residual])
        net = tf.keras.layers.ReLU()(net)
        net = _max_pool(net, pool, pool, architecture)
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    net = tf.keras.layers.Dense(dense_units, activation="relu")(net)
    return _classifier(fingerprint, net, label_count)


def create_tc_resnet_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """Temporal-convolution ResNet (arXiv:1904.03814), kws_streaming models/tc_resnet.py.

    model_size_info: kernel_size (time length of the residual blocks' kernels),
    channels of the first (3, 1) convolution, then the channels of each
    residual block. A block whose channels differ from its input strides by 2
    and adds a 1x1 convolution + batch norm + relu shortcut. Batch norm uses
    momentum 0.997 with center and scale (the 30k flags). The 1x1 convolution
    classifier of kws_streaming is the equivalent Dense after global average
    pooling.
    """
    info = list(model_size_info)
    kernel, channels = info[0], info[1:]

    def conv_bn(net: tf.Tensor, filters: int, kernel_size: int, strides: int) -> tf.Tensor:
        """Conv2D over time with bias, then batch norm."""
        net = tf.keras.layers.Conv2D(filters, (kernel_size, 1), strides=(strides, 1),
                                     padding="same")(net)
        return tf.keras.layers.BatchNormalization(momentum=0.997)(net)

    fingerprint, net = _input(model_settings)
    net = tf.keras.layers.ReLU()(conv_bn(net, channels[0], 3, 1))
    for filters in channels[1:]:
        if filters != net.shape[-1]:
            strides = 2
            shortcut = tf.keras.layers.ReLU()(conv_bn(net, filters, 1, strides))
        else:
            strides = 1
            shortcut = net
        net = tf.keras.layers.ReLU()(conv_bn(net, filters, kernel, strides))
        net = conv_bn(net, filters, kernel, 1)
        net = tf.keras.layers.Add()([net, shortcut])
        net = tf.keras.layers.ReLU()(net)
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    return _classifier(fingerprint, net, label_count)


def create_mobilenet_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """MobileNet (arXiv:1704.04861) over time, kws_streaming models/mobilenet.py.

    model_size_info: filters, kernel length and stride of the first valid
    convolution, then per depthwise-separable block the depthwise kernel length,
    its stride (valid padding when > 1, same otherwise) and the pointwise
    filters. Kernels and strides act on time only (kws_streaming's (k, 1)
    kernels; its (2, 2) strides equal (2, 1) on the width-1 feature map).
    Convolutions have no bias and are followed by batch norm with scale and
    relu6.
    """
    architecture = "mobilenet"
    info = list(model_size_info)
    fingerprint, net = _input(model_settings)
    _check_frames(net, info[1], architecture)
    net = tf.keras.layers.Conv2D(info[0], (info[1], 1), strides=(info[2], 1), use_bias=False)(net)
    net = tf.keras.layers.BatchNormalization()(net)
    net = tf.keras.layers.ReLU(6.0)(net)
    for i in range(3, len(info), 3):
        kernel, strides, filters = info[i:i + 3]
        padding = "same" if strides == 1 else "valid"
        if padding == "valid":
            _check_frames(net, kernel, architecture)
        net = tf.keras.layers.DepthwiseConv2D((kernel, 1), strides=(strides, 1), padding=padding,
                                              use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization()(net)
        net = tf.keras.layers.ReLU(6.0)(net)
        net = tf.keras.layers.Conv2D(filters, 1, use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization()(net)
        net = tf.keras.layers.ReLU(6.0)(net)
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    return _classifier(fingerprint, net, label_count)


def create_mobilenet_v2_model(model_settings: ModelSettings,
                              model_size_info: Sequence[int], *,
                              label_count: int) -> tf.keras.Model:
    """MobileNetV2 (arXiv:1801.04381) over time, kws_streaming models/mobilenet_v2.py.

    model_size_info: filters, kernel length and stride of the first valid
    convolution, then per inverted-residual block the depthwise kernel length,
    its stride, the projection filters and the expansion in percent of the
    block's input channels (150 = kws_streaming's 1.5; the expanded channel
    count is rounded to an integer). A block adds its input when stride is 1
    and channels are unchanged. Batch norm has no scale (kws_streaming's
    bn_scale 0) except after the linear projection; activations are relu6.
    """
    architecture = "mobilenet_v2"
    info = list(model_size_info)
    fingerprint, net = _input(model_settings)
    _check_frames(net, info[1], architecture)
    net = tf.keras.layers.Conv2D(info[0], (info[1], 1), strides=(info[2], 1), use_bias=False)(net)
    net = tf.keras.layers.BatchNormalization(scale=False)(net)
    net = tf.keras.layers.ReLU(6.0)(net)
    for i in range(3, len(info), 4):
        kernel, strides, filters, expansion_percent = info[i:i + 4]
        block_input = net
        in_channels = net.shape[-1]
        expanded = max(1, round(in_channels * expansion_percent / 100))
        net = tf.keras.layers.Conv2D(expanded, 1, use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization(scale=False)(net)
        net = tf.keras.layers.ReLU(6.0)(net)
        net = tf.keras.layers.DepthwiseConv2D((kernel, 1), strides=(strides, 1), padding="same",
                                              use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization(scale=False)(net)
        net = tf.keras.layers.ReLU(6.0)(net)
        net = tf.keras.layers.Conv2D(filters, 1, use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization()(net)
        if in_channels == filters and strides == 1:
            net = tf.keras.layers.Add()([block_input, net])
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    return _classifier(fingerprint, net, label_count)


def create_inception_model(model_settings: ModelSettings,
                           model_size_info: Sequence[int], *,
                           label_count: int) -> tf.keras.Model:
    """Inception (arXiv:1512.00567) over time, kws_streaming models/inception.py.

    model_size_info: filters and kernel length of the first valid convolution
    and the stride of the (3, 1) max pool after it (1 = no pool), then per
    inception block filters1 (filters of each of its three branches: 1x1,
    1x1 + k, 1x1 + k + k), filters2 (1x1 convolution after their
    concatenation), kernel length k and the stride of the max pool after the
    block. Convolutions have no bias; batch norm has no scale (the 30k flags'
    bn_scale 0); activations are relu.
    """
    architecture = "inception"
    info = list(model_size_info)
    fingerprint, net = _input(model_settings)
    _check_frames(net, info[1], architecture)
    net = _conv_bn(net, info[0], info[1], scale=False, padding="valid")
    net = _max_pool(net, 3, info[2], architecture)
    for i in range(3, len(info), 4):
        filters1, filters2, kernel, stride = info[i:i + 4]
        branch1 = _conv_bn(net, filters1, 1, scale=False)
        branch2 = _conv_bn(net, filters1, 1, scale=False)
        branch2 = _conv_bn(branch2, filters1, kernel, scale=False)
        branch3 = _conv_bn(net, filters1, 1, scale=False)
        branch3 = _conv_bn(branch3, filters1, kernel, scale=False)
        branch3 = _conv_bn(branch3, filters1, kernel, scale=False)
        net = tf.keras.layers.Concatenate()([branch1, branch2, branch3])
        net = _conv_bn(net, filters2, 1, scale=False)
        net = _max_pool(net, 3, stride, architecture)
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    return _classifier(fingerprint, net, label_count)


def create_inception_resnet_model(model_settings: ModelSettings,
                                  model_size_info: Sequence[int], *,
                                  label_count: int) -> tf.keras.Model:
    """Inception-ResNet (arXiv:1602.07261) over time, kws_streaming models/inception_resnet.py.

    model_size_info: filters and kernel length of the first valid convolution
    and the stride of the (3, 1) max pool after it (1 = no pool), then per
    block: the residual scale in percent (20 = kws_streaming's 0.2), filters of
    branch 0 (1x1) and of the 1x1 that opens branch 1, filters of branch 1's two
    convolutions of length kernel, filters of the 1x1 convolution after the
    block, the kernel length, and the stride of the max pool after the block.
    The block output is relu(x + scale * up), where up is a biased 1x1
    convolution + batch norm back to x's channels; the scaling is a Rescaling
    layer (kws_streaming uses a Lambda). Convolutions have no other bias; batch
    norm has scale (the 30k flags' bn_scale 1).
    """
    architecture = "inception_resnet"
    info = list(model_size_info)
    fingerprint, net = _input(model_settings)
    _check_frames(net, info[1], architecture)
    net = _conv_bn(net, info[0], info[1], scale=True, padding="valid")
    net = _max_pool(net, 3, info[2], architecture)
    for i in range(3, len(info), 6):
        scale_percent, filters0, filters1, filters2, kernel, stride = info[i:i + 6]
        branch0 = _conv_bn(net, filters0, 1, scale=True)
        branch1 = _conv_bn(net, filters0, 1, scale=True)
        branch1 = _conv_bn(branch1, filters1, kernel, scale=True)
        branch1 = _conv_bn(branch1, filters1, kernel, scale=True)
        mixed = tf.keras.layers.Concatenate()([branch0, branch1])
        up = _conv_bn(mixed, net.shape[-1], 1, scale=True, activation="linear", use_bias=True)
        up = tf.keras.layers.Rescaling(scale_percent / 100)(up)
        net = tf.keras.layers.Add()([net, up])
        net = tf.keras.layers.ReLU()(net)
        net = _conv_bn(net, filters2, 1, scale=True, padding="valid")
        net = _max_pool(net, 3, stride, architecture)
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    return _classifier(fingerprint, net, label_count)


def _xception_block(net: tf.Tensor, kernels: Sequence[int], filters: Sequence[int]) -> tf.Tensor:
    """kws_streaming xception.block: separable convolutions with a 1x1 shortcut."""
    residual = tf.keras.layers.Conv2D(filters[-1], 1, use_bias=False)(net)
    residual = tf.keras.layers.BatchNormalization(scale=False)(residual)
    for i, (kernel, channels) in enumerate(zip(kernels, filters)):
        net = tf.keras.layers.DepthwiseConv2D((kernel, 1), padding="same", use_bias=False)(net)
        net = tf.keras.layers.Conv2D(channels, 1, use_bias=False)(net)
        net = tf.keras.layers.BatchNormalization(scale=False)(net)
        if i != len(kernels) - 1:
            net = tf.keras.layers.ReLU()(net)
    net = tf.keras.layers.Add()([residual, net])
    return tf.keras.layers.ReLU()(net)


def create_xception_model(model_settings: ModelSettings,
                          model_size_info: Sequence[int], *,
                          label_count: int) -> tf.keras.Model:
    """Xception / MatchboxNet-like model (arXiv:1610.02357), kws_streaming models/xception.py.

    model_size_info: n2, n3, n4 (separable convolutions in xception blocks
    2-4), kernel length and filters of the first valid convolution (block 1),
    a (kernel, filters) pair per separable convolution in block order, the
    stride of the (3, 1) max pool after each of blocks 1-4 (1 = no pool), and
    the units of the Dense + batch norm + relu layer before the classifier.
    Convolutions and that Dense have no bias; batch norm has no scale (the 30k
    flags' bn_scale 0).
    """
    architecture = "xception"
    info = list(model_size_info)
    counts, first_kernel, first_filters = info[:3], info[3], info[4]
    pairs, strides, dense_units = info[5:-5], info[-5:-1], info[-1]
    fingerprint, net = _input(model_settings)
    _check_frames(net, first_kernel, architecture)
    net = _conv_bn(net, first_filters, first_kernel, scale=False, padding="valid")
    net = _max_pool(net, 3, strides[0], architecture)
    start = 0
    for count, stride in zip(counts, strides[1:]):
        block = pairs[2 * start:2 * (start + count)]
        net = _xception_block(net, block[0::2], block[1::2])
        net = _max_pool(net, 3, stride, architecture)
        start += count
    net = tf.keras.layers.GlobalAveragePooling2D()(net)
    net = tf.keras.layers.Dense(dense_units, use_bias=False)(net)
    net = tf.keras.layers.BatchNormalization(scale=False)(net)
    net = tf.keras.layers.ReLU()(net)
    return _classifier(fingerprint, net, label_count)
