"""BC-ResNet (kws/models/bc_resnet.py): the paper's sizes, SubSpectralNorm in training and inference, the
training paths of its layers against the plain formulations they stand for, batch norm
recalibration, the refused geometries, and end to end on tiny data: train.py, convert.py to int8
builtin ops, TFLM next to LiteRT, and the deployment report."""
import json
from typing import Callable, List, Sequence

import numpy as np
import pytest

import convert
import train
from kws import features, tf_env
from kws.cli import UsageError
from kws.data import audio_io
from kws.export import quantization
from kws.models import bc_resnet, registry
from kws.runtime import report as tflite_report
from kws.runtime import tflite_model
from kws.training import trainer

from conftest import TINY_LOG_MEL_FLAGS, make_speech_commands, tiny_settings

tf = tf_env.import_tensorflow()

# The published features: 98 frames of 40 log-mel bands (30 ms windows every 10 ms), 12 labels.
PUBLISHED = features.prepare_model_settings(16000, 1000, 30, 10, 40, features.LOG_MEL)
LABELS = 12
FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]
SOFTMAX_STEP = 1 / 256  # the int8 softmax output's fixed scale


@pytest.mark.parametrize("base_channels, paper, deployed, macs", [
    (8, 9_232, 8_656, 2_408_440),  # BC-ResNet-1: 9.2k in the paper's table
    (16, 27_284, 26_132, 7_106_160),  # BC-ResNet-2: 27.3k
])
def test_sizes_match_the_paper(base_channels, paper, deployed, macs):
    """The paper counts every trained weight (batch norm's scale and offset too); count_parameters
    leaves out the batch norm that folds into the convolutions, but not the sub-band norm."""
    model = registry.create_model(PUBLISHED, "bc_resnet", [base_channels], label_count=LABELS)
    assert sum(weight.shape.num_elements() for weight in model.trainable_weights) == paper
    assert registry.count_parameters(model) == deployed
    assert registry.count_macs(model) == macs
    assert model.output_shape == (None, 12)
    if base_channels == 8:
        assert tflite_report.analyze(quantization.to_tflite(model, FLOAT32))["macs"] == macs


@pytest.mark.parametrize("bands", [10, 32, 41, 60])
def test_frequencies_that_do_not_split_into_sub_bands_are_one_line(bands):
    settings = features.prepare_model_settings(16000, 1000, 30, 10, bands, features.LOG_MEL)
    with pytest.raises(UsageError, match=f"^--dct_coefficient_count {bands} does not fit "
                                         f"bc_resnet: .*use a multiple of 40") as error:
        registry.create_model(settings, "bc_resnet", [8], label_count=LABELS)
    assert "\n" not in str(error.value)


def test_eighty_bands_build():
    settings = features.prepare_model_settings(16000, 1000, 30, 10, 80, features.LOG_MEL)
    assert bc_resnet.stage_frequencies(80) == [40, 20, 10, 10]
    model = registry.create_model(settings, "bc_resnet", [2], label_count=LABELS)
    assert model.output_shape == (None, LABELS)


def sub_bands(values: np.ndarray) -> np.ndarray:
    """[batch, time, frequency, channels] -> [batch, time, 5, frequency / 5, channels]."""
    batch, time, frequency, channels = values.shape
    return values.reshape(batch, time, 5, frequency // 5, channels)


def test_sub_spectral_norm_normalizes_each_sub_band_and_infers_with_its_statistics():
    rng = np.random.default_rng(0)
    layer = bc_resnet.SubSpectralNorm()
    inputs = rng.normal(3, 2, (4, 6, 10, 3)).astype(np.float32)  # 5 sub-bands of 2 bins
    inputs *= np.arange(1, 11, dtype=np.float32)[None, None, :, None]  # sub-bands differ
    trained = sub_bands(layer(inputs, training=True).numpy())
    np.testing.assert_allclose(trained.mean(axis=(0, 1, 3)), 0, atol=1e-5)
    variance = sub_bands(inputs).var(axis=(0, 1, 3))
    np.testing.assert_allclose(trained.var(axis=(0, 1, 3)), variance / (variance + 1e-3), rtol=1e-4)
    norm = layer.norm
    gamma, beta, mean, var = (rng.uniform(0.5, 2, (1, 1, 5, 1, 3)) for _ in range(4))
    norm.set_weights([gamma, beta, mean, var])
    expected = (sub_bands(inputs) - mean) / np.sqrt(var + norm.epsilon) * gamma + beta
    np.testing.assert_allclose(layer(inputs).numpy(), expected.reshape(inputs.shape), rtol=1e-5)


def forward_and_gradients(call: Callable[[tf.Tensor], tf.Tensor], inputs: np.ndarray,
                          variables: Sequence[tf.Variable]) -> List[np.ndarray]:
    """call(inputs) and the gradients of a random projection of it by inputs and variables."""
    inputs = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = call(inputs)
        projection = tf.random.stateless_normal(outputs.shape, [0, 1])
        loss = tf.reduce_sum(outputs * projection)
    return [outputs.numpy()] + [g.numpy() for g in tape.gradient(loss, [inputs, *variables])]


def assert_all_close(values: Sequence[np.ndarray], expected_values: Sequence[np.ndarray],
                     rtol: float) -> None:
    """Each value within rtol of its expected value or 1e-5 of the largest expected one."""
    for value, expected in zip(values, expected_values, strict=True):
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("frequency, channels", [(20, 8), (10, 12), (5, 20)])  # 4, 2, 1 bins
def test_sub_spectral_norm_is_the_batch_norm_of_the_sub_bands(frequency, channels):
    """The training path (sums over the 4-D input) against what it stands for:
    BatchNormalization(axis=[2, 4]) of the input as [batch, time, 5, bins, channels], with the
    same weights: outputs, gradients, moving statistics; a frozen norm infers in both."""
    rng = np.random.default_rng(frequency)
    shape = (16, 98, frequency, channels)  # the published frames; values of a ReLU'd block
    inputs = np.maximum(rng.normal(0.5, 2, shape), 0).astype(np.float32)
    layer = bc_resnet.SubSpectralNorm()
    layer.build(shape)
    plain = tf.keras.layers.BatchNormalization(axis=[2, 4], momentum=0.5)
    grouped = (16, 98, 5, frequency // 5, channels)
    plain.build(grouped)
    weights = [rng.uniform(0.5, 2, (1, 1, 5, 1, channels)).astype(np.float32) for _ in range(4)]
    layer.norm.set_weights(weights)
    plain.set_weights(weights)
    layer.norm.momentum = 0.5

    def plain_call(training):
        return lambda x: tf.reshape(plain(tf.reshape(x, grouped), training=training), shape)

    norm = layer.norm
    got = forward_and_gradients(lambda x: layer(x, training=True), inputs, [norm.gamma, norm.beta])
    want = forward_and_gradients(plain_call(True), inputs, [plain.gamma, plain.beta])
    assert_all_close(got, want, rtol=1e-4)
    for moving, expected in ((norm.moving_mean, plain.moving_mean),
                             (norm.moving_variance, plain.moving_variance)):
        np.testing.assert_allclose(moving.numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(layer(inputs).numpy(), plain_call(False)(inputs).numpy(),
                               rtol=1e-5, atol=1e-5)
    layer.trainable = plain.trainable = False
    np.testing.assert_allclose(layer(inputs, training=True).numpy(),
                               plain_call(True)(inputs).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer, plain, shape", [
    (bc_resnet.FrequencyMean(pool_size=(1, 20)), tf.keras.layers.AveragePooling2D((1, 20)),
     (8, 98, 20, 8)),
    (bc_resnet.FullBandDepthwiseConv2D(5, use_bias=False),
     tf.keras.layers.DepthwiseConv2D(5, use_bias=False), (8, 102, 5, 20)),
    (bc_resnet.FullBandDepthwiseConv2D(5, activation="relu"),
     tf.keras.layers.DepthwiseConv2D(5, activation="relu"), (8, 102, 5, 20)),
], ids=["frequency_mean", "full_band_depthwise", "full_band_depthwise_bias_relu"])
def test_training_paths_compute_the_plain_layers(layer, plain, shape):
    """FrequencyMean's and FullBandDepthwiseConv2D's training ops give the outputs and gradients
    of the plain layer with the same weights (in inference they are the plain layer)."""
    rng = np.random.default_rng(2)
    inputs = rng.normal(0, 1, shape).astype(np.float32)
    layer.build(shape)
    plain.build(shape)
    weights = [rng.normal(0, 1, weight.shape).astype(np.float32) for weight in layer.weights]
    layer.set_weights(weights)
    plain.set_weights(weights)
    got = forward_and_gradients(lambda x: layer(x, training=True), inputs, layer.weights)
    assert_all_close(got, forward_and_gradients(lambda x: plain(x, training=True), inputs,
                                                plain.weights), rtol=1e-5)
    np.testing.assert_array_equal(layer(inputs).numpy(), plain(inputs).numpy())


def test_batch_norm_recalibration_reaches_the_sub_spectral_norm():
    inputs = tf.keras.Input((6, 10, 3))
    model = tf.keras.Model(inputs, bc_resnet.SubSpectralNorm()(inputs))
    rng = np.random.default_rng(1)
    batches = [rng.normal(2, 3, (8, 6, 10, 3)).astype(np.float32) for _ in range(3)]
    trainer.recalibrate_batch_norm(model, batches)
    means = np.mean([sub_bands(batch).mean(axis=(0, 1, 3)) for batch in batches], axis=0)
    np.testing.assert_allclose(model.layers[1].norm.moving_mean.numpy().reshape(5, 3), means,
                               atol=1e-5)
    full = registry.create_model(PUBLISHED, "bc_resnet", [8], label_count=LABELS)
    norms = [layer for layer in trainer._all_layers(full)
             if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == 12 + 12 + 4 + 2  # sub-band and f1 norms, transitions, head, classifier


def test_trains_converts_to_int8_and_runs_on_tflm_as_on_litert(tmp_path, capsys):
    """BC-ResNet-1 on 40 log-mel bands, a few steps of train.py, convert.py's int8 model (float
    input and output): builtin ops only (sub-band norm MUL and ADD, swish LOGISTIC and MUL),
    which TFLM runs as LiteRT's reference kernels do. (LiteRT's optimized kernels round some
    convolutions one step apart, which the large sub-band gains of a model trained for four
    steps on clean tones amplify to tens of steps.)"""
    data_dir = make_speech_commands(tmp_path / "data", words=("yes", "no"), unknown_words=("cat",))
    flags = ["--model_architecture", "bc_resnet", "--model_size_info", "8", *TINY_LOG_MEL_FLAGS,
             "--data_url", "", "--data_dir", str(data_dir), "--wanted_words", "yes,no"]
    train.main(train.build_parser().parse_args(
        [*flags, "--train_dir", str(tmp_path / "train"), "--summaries_dir", "",
         "--how_many_training_steps", "4", "--learning_rate", "0.01", "--batch_size", "8",
         "--eval_step_interval", "4"]))
    assert "Model bc_resnet 8: 8,392 parameters" in capsys.readouterr().out
    output = tmp_path / "bc_resnet_quantized.tflite"
    convert.main(convert.build_parser().parse_args(
        [*flags, "--checkpoint", tf.train.latest_checkpoint(str(tmp_path / "train" / "best")),
         "--output_file", str(output), "--report_json", str(tmp_path / "report.json"),
         "--representative_samples", "20"]))
    printed = capsys.readouterr().out
    assert "Deployment report of" in printed and "LOGISTIC" in printed
    report = json.loads((tmp_path / "report.json").read_text())["report"]
    assert report["ops"] == {"CONV_2D": 18, "DEPTHWISE_CONV_2D": 25, "AVERAGE_POOL_2D": 13,
                             "MUL": 24, "ADD": 32, "LOGISTIC": 12, "PAD": 1, "RESHAPE": 1,
                             "FULLY_CONNECTED": 1, "SOFTMAX": 1, "QUANTIZE": 1, "DEQUANTIZE": 1}
    assert report["tflm_arena_bytes"] > report["arena_bytes"] > 0  # TFLM runs it
    paths = [str(path) for word in ("yes", "no", "cat") for path in sorted((data_dir / word).glob("*.wav"))[:2]]
    inputs = features.Fingerprinter(tiny_settings("bc_resnet"))(audio_io.load_clips(paths, 16000, 16000)[0])
    content = output.read_bytes()
    tflm, litert = (tflite_model.TFLiteModel(content=content, runtime=runtime).predict(inputs)
                    for runtime in (tflite_model.TFLM, tflite_model.LITERT_REFERENCE))
    assert np.abs(tflm - litert).max() <= SOFTMAX_STEP + 1e-6
