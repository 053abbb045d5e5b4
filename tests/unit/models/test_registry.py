"""Tests of the model zoo: shapes, size validation, Arm checkpoints, parameter and MAC counts."""
from pathlib import Path

import numpy as np
import pytest

from kws import cli, features, tf_env
from kws.models import registry

tf = tf_env.import_tensorflow()

ARM_PRETRAINED = (Path(__file__).resolve().parents[3].parent / "shared" / "reference"
                  / "arm_pretrained")

# 9 frames x 4 coefficients, 3 labels: small enough to build every model in well under a second.
TINY_SETTINGS = features.prepare_model_settings(sample_rate=16000, clip_duration_ms=200,
                                                window_size_ms=40, window_stride_ms=20,
                                                dct_coefficient_count=4)
TINY_LABELS = 3
ARM_LABELS = 12  # _silence_, _unknown_ and Arm's ten words
TINY_SIZES = {
    "single_fc": [],
    "dnn": [8, 6],
    "cnn": [4, 3, 2, 1, 1, 5, 3, 2, 2, 1, 6, 7],
    "ds_cnn": [3, 4, 3, 2, 2, 2, 4, 3, 3, 1, 1, 5, 3, 3, 1, 1],
    "basic_lstm": [5],
    "lstm": [3, 5],
    "gru": [2, 4],
    "crnn": [4, 3, 2, 2, 1, 2, 5, 6],
}

# Arm's published checkpoints: (architecture, folder, checkpoint prefix, --model_size_info).
ARM_CHECKPOINTS = [
    ("dnn", "DNN/DNN_S", "dnn_0.84_ckpt", [144, 144, 144]),
    ("dnn", "DNN/DNN_M", "dnn_0.86_ckpt", [256, 256, 256]),
    ("cnn", "CNN/CNN_S", "cnn_0.92_ckpt", [28, 10, 4, 1, 1, 30, 10, 4, 2, 1, 16, 128]),
    ("cnn", "CNN/CNN_M", "cnn_0.93_ckpt", [64, 10, 4, 1, 1, 48, 10, 4, 2, 1, 16, 128]),
    ("ds_cnn", "DS_CNN/DS_CNN_S", "ds_cnn_0.94_ckpt",
     [5, 64, 10, 4, 2, 2, 64, 3, 3, 1, 1, 64, 3, 3, 1, 1, 64, 3, 3, 1, 1, 64, 3, 3, 1, 1]),
    ("ds_cnn", "DS_CNN/DS_CNN_M", "ds_cnn_0.95_ckpt",
     [5, 172, 10, 4, 2, 1, 172, 3, 3, 2, 2, 172, 3, 3, 1, 1, 172, 3, 3, 1, 1, 172, 3, 3, 1, 1]),
    ("basic_lstm", "BASIC_LSTM/Basic_LSTM_S", "basic_lstm_0.930_ckpt", [118]),
    ("basic_lstm", "BASIC_LSTM/Basic_LSTM_M", "basic_lstm_0.936_ckpt", [214]),
]


def arm_settings(architecture: str) -> features.ModelSettings:
    """The features Arm trained with: 49 (DNN: 25) frames of 10 MFCCs."""
    window_stride_ms = 40 if architecture == "dnn" else 20
    return features.prepare_model_settings(16000, 1000, 40, window_stride_ms, 10)


def model_variables(prefix: str) -> dict:
    """Checkpoint key -> shape of the model's variables (optimizer state left out)."""
    return {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)
            if name.startswith("layer") and ".OPTIMIZER_SLOT" not in name}


@pytest.mark.parametrize("architecture", sorted(TINY_SIZES))
def test_every_architecture_builds_and_runs_on_any_batch(architecture):
    model = registry.create_model(TINY_SETTINGS, architecture, TINY_SIZES[architecture],
                                  label_count=TINY_LABELS)
    assert model.input_shape == (None, TINY_SETTINGS.fingerprint_size)
    assert model.output_shape == (None, TINY_LABELS)
    for batch in (1, 3):
        fingerprints = np.random.default_rng(0).normal(
            size=(batch, TINY_SETTINGS.fingerprint_size)).astype(np.float32)
        scores = model(fingerprints).numpy()
        assert scores.shape == (batch, TINY_LABELS)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("architecture", sorted(TINY_SIZES))
def test_the_output_width_is_the_label_count_argument(architecture):
    """The label count is the builder's argument, not a field of the fingerprint settings."""
    widths = [registry.create_model(TINY_SETTINGS, architecture, TINY_SIZES[architecture],
                                    label_count=count).output_shape for count in (2, 7)]
    assert widths == [(None, 2), (None, 7)]


def test_every_registered_architecture_is_tested():
    assert set(registry.MODELS) >= set(TINY_SIZES)
    assert set(TINY_SIZES) == {"single_fc", "dnn", "cnn", "ds_cnn", "basic_lstm", "lstm",
                               "gru", "crnn"}


def test_defaults_are_the_papers_small_configurations():
    defaults = {name: spec.default_size_info for name, spec in registry.MODELS.items()}
    assert defaults["dnn"] == (144, 144, 144)
    assert defaults["cnn"] == (28, 10, 4, 1, 1, 30, 10, 4, 2, 1, 16, 128)
    assert defaults["ds_cnn"] == tuple(ARM_CHECKPOINTS[4][3])
    assert defaults["basic_lstm"] == (118,)
    assert defaults["lstm"] == (98, 144)
    assert defaults["gru"] == (1, 154)
    assert defaults["crnn"] == (48, 10, 4, 2, 2, 2, 60, 84)
    assert defaults["single_fc"] == ()


def test_none_size_info_builds_the_default():
    model = registry.create_model(arm_settings("dnn"), "dnn", None, label_count=ARM_LABELS)
    assert [layer.units for layer in model.layers
            if isinstance(layer, tf.keras.layers.Dense)] == [144, 144, 144, 12]


@pytest.mark.parametrize("architecture, size_info, expected", [
    ("cnn", [28, 10, 4], "needs 12 integers"),
    ("ds_cnn", [2, 64, 10, 4, 2, 2], "needs 11 integers"),
    ("lstm", [98], "needs 2 integers"),
    ("single_fc", [10], "needs 0 integers"),
    ("dnn", [], "needs 1 integer"),
])
def test_wrong_length_size_info_is_a_usage_error(architecture, size_info, expected):
    with pytest.raises(cli.UsageError) as error:
        registry.create_model(TINY_SETTINGS, architecture, size_info, label_count=TINY_LABELS)
    message = str(error.value)
    assert f"for {architecture} " in message and expected in message
    assert registry.MODELS[architecture].layout in message
    assert f"got {len(size_info)}" in message and "\n" not in message


@pytest.mark.parametrize("architecture, size_info", [
    ("dnn", [8, 0]), ("gru", [1, -4]), ("ds_cnn", [0]),
])
def test_non_positive_size_info_is_a_usage_error(architecture, size_info):
    with pytest.raises(cli.UsageError, match=f"for {architecture} takes positive integers"):
        registry.create_model(TINY_SETTINGS, architecture, size_info, label_count=TINY_LABELS)


def test_kernel_larger_than_the_fingerprint_is_a_usage_error():
    with pytest.raises(cli.UsageError, match="for cnn: a 10 x 4 convolution kernel does not "
                                             "fit its 9 x 4 input"):
        registry.create_model(TINY_SETTINGS, "cnn", None, label_count=TINY_LABELS)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(cli.UsageError, match="unknown --model_architecture 'rnn'; known: "
                                             "single_fc, dnn, cnn, ds_cnn"):
        registry.create_model(TINY_SETTINGS, "rnn", None, label_count=TINY_LABELS)


def test_model_flags_take_arms_command_lines_verbatim():
    parser = cli.make_parser("test")
    registry.add_model_flags(parser)
    args = parser.parse_args("--model_architecture dnn --model_size_info 128 128 128".split())
    assert (args.model_architecture, args.model_size_info) == ("dnn", [128, 128, 128])
    args = parser.parse_args([])
    assert (args.model_architecture, args.model_size_info) == ("dnn", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--model_architecture", "rnn"])


@pytest.mark.parametrize("architecture, folder, name, size_info", ARM_CHECKPOINTS,
                         ids=[checkpoint[1].split("/")[1] for checkpoint in ARM_CHECKPOINTS])
def test_arm_checkpoint_loads_every_variable(architecture, folder, name, size_info, tmp_path):
    prefix = ARM_PRETRAINED / folder / "ckpt" / name
    if not prefix.with_name(name + ".index").exists():
        pytest.skip(f"Arm's pretrained checkpoints are not in {ARM_PRETRAINED}")
    model = registry.create_model(arm_settings(architecture), architecture, size_info,
                                  label_count=ARM_LABELS)
    # expect_partial: the checkpoint also holds Adam's slots, which a bare model has no use for.
    model.load_weights(str(prefix)).expect_partial().assert_existing_objects_matched()

    ours = str(tmp_path / "ours")
    model.save_weights(ours)
    assert model_variables(ours) == model_variables(str(prefix))
    arm_reader, our_reader = tf.train.load_checkpoint(str(prefix)), tf.train.load_checkpoint(ours)
    for key in model_variables(ours):
        np.testing.assert_array_equal(our_reader.get_tensor(key), arm_reader.get_tensor(key))


def test_counts_of_a_tiny_dnn_by_hand():
    model = registry.create_model(TINY_SETTINGS, "dnn", [8, 6], label_count=TINY_LABELS)
    # 36 inputs -> 8 -> 6 -> 3 labels.
    assert registry.count_parameters(model) == (36 * 8 + 8) + (8 * 6 + 6) + (6 * 3 + 3)
    assert registry.count_macs(model) == 36 * 8 + 8 * 6 + 6 * 3


def test_counts_of_a_tiny_ds_cnn_by_hand():
    model = registry.create_model(TINY_SETTINGS, "ds_cnn", TINY_SIZES["ds_cnn"],
                                  label_count=TINY_LABELS)
    # 9 x 4 input; layer 0 (4 filters, 3 x 2 kernel, stride 2 x 2, SAME) gives 5 x 2 positions,
    # which the stride-1 depthwise (3 x 3) and pointwise (4 then 5 filters) layers keep.
    positions = 5 * 2
    macs = positions * (3 * 2 * 1 * 4 + 3 * 3 * 4 + 4 * 4 + 3 * 3 * 4 + 4 * 5) + 5 * 3
    assert registry.count_macs(model) == macs
    # Batch norm is folded away at deployment, so only kernels and biases count.
    weights = (3 * 2 * 4 + 4) + (3 * 3 * 4 + 4) + (4 * 4 + 4) + (3 * 3 * 4 + 4) + (4 * 5 + 5)
    assert registry.count_parameters(model) == weights + 5 * 3 + 3


def test_macs_of_tiny_recurrent_models_by_hand():
    frames, coefficients = TINY_SETTINGS.spectrogram_length, TINY_SETTINGS.dct_coefficient_count
    basic_lstm = registry.create_model(TINY_SETTINGS, "basic_lstm", [5], label_count=TINY_LABELS)
    assert registry.count_macs(basic_lstm) == frames * 4 * 5 * (coefficients + 5) + 5 * 3
    lstm = registry.create_model(TINY_SETTINGS, "lstm", [3, 5],  # projection 3, cells 5
                                 label_count=TINY_LABELS)
    step = 4 * 5 * coefficients + 4 * 5 * 3 + 5 * 3
    assert registry.count_macs(lstm) == frames * step + 3 * 3
    gru = registry.create_model(TINY_SETTINGS, "gru", [2, 4], label_count=TINY_LABELS)
    step = 3 * 4 * (coefficients + 4) + 3 * 4 * (4 + 4)
    assert registry.count_macs(gru) == frames * step + 4 * 3


def test_macs_of_ds_cnn_s_match_the_paper():
    model = registry.create_model(arm_settings("ds_cnn"), "ds_cnn", None, label_count=ARM_LABELS)
    # Hello Edge reports 5.4M operations for DS-CNN S, counting a MAC as two operations.
    assert 2.6e6 < registry.count_macs(model) < 2.75e6


def test_a_transposed_convolution_counts_its_kernel_at_each_input_position():
    image = tf.keras.Input(shape=(6, 5, 3))
    model = tf.keras.Model(image, tf.keras.layers.Conv2DTranspose(4, (3, 2), strides=2)(image))
    # As the .tflite report counts TRANSPOSE_CONV: 6 x 5 input positions, not 13 x 10 output ones.
    assert registry.count_macs(model) == 6 * 5 * (3 * 2 * 3 * 4)


def test_count_macs_refuses_unknown_weighted_layers():
    fingerprint = tf.keras.Input(shape=(4,))
    model = tf.keras.Model(fingerprint, tf.keras.layers.LayerNormalization()(fingerprint))
    with pytest.raises(ValueError, match="LayerNormalization"):
        registry.count_macs(model)


def test_projection_lstm_survives_a_config_round_trip():
    model = registry.create_model(TINY_SETTINGS, "lstm", [3, 5], label_count=TINY_LABELS)
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    fingerprints = np.ones((2, TINY_SETTINGS.fingerprint_size), np.float32)
    np.testing.assert_allclose(clone(fingerprints), model(fingerprints), rtol=1e-6)
