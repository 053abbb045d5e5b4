"""Tests of test_tflite.py and label_wav.py: any .tflite, batched or not, quantized or not,
clear messages for models that do not fit the flags, Arm's published figures, and the
deployment tools where TensorFlow cannot be imported."""
import json
import subprocess
import sys

import numpy as np
import pytest

import label_wav
import test_tflite
from kws import cli, evaluation, features, tf_env
from kws.cli import UsageError
from kws.data import speech_commands
from kws.export import quantization
from kws.models import registry
from kws.runtime import tflite_model
from kws.training import checkpoints

from conftest import ROOT, SHARED, TINY_FEATURE_FLAGS, make_speech_commands, write_wav

tf = tf_env.import_tensorflow()

FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]

SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)  # TINY_FEATURE_FLAGS


def tiny_dnn(settings=SETTINGS):
    tf.keras.utils.set_random_seed(0)
    return registry.create_model(settings, "dnn", (16, 16), label_count=4)


def fingerprints(count, size=SETTINGS.fingerprint_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 8, (count, size)).astype(np.float32)


def parse(argv):
    return test_tflite.build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def dnn_files(tmp_path_factory):
    """A tiny dnn as a checkpoint, a float .tflite and an int8-input/output .tflite."""
    root = tmp_path_factory.mktemp("tflite")
    model = tiny_dnn()
    checkpoint = str(root / "ckpt" / "dnn")
    checkpoints.save_weights_atomically(model, checkpoint)
    paths = {"checkpoint": checkpoint, "root": root, "model": model}
    representative = fingerprints(16)
    for name, mode, inference_type in (("float", quantization.NO_QUANTIZATION, "float32"),
                                       ("quantized", quantization.FULL_INTEGER, "float32"),
                                       ("int8", quantization.FULL_INTEGER, "int8")):
        paths[name] = str(root / f"dnn_{name}.tflite")
        mode = quantization.MODES[(mode, inference_type)]
        cli.write_atomically(paths[name], quantization.to_tflite(model, mode, representative))
    return paths


def test_mismatched_input_says_which_settings_fit(dnn_files):
    model = tflite_model.TFLiteModel(dnn_files["float"])  # 49 x 10 = 490 inputs
    args = parse(["--tflite_path", dnn_files["float"]])  # defaults: 98 x 40 = 3920
    settings = features.settings_from_flags(args)
    with pytest.raises(UsageError) as error:
        model.check_settings(settings)
    message = str(error.value)
    assert "490" in message and "3920" in message and "\n" not in message
    assert "--window_stride_ms 20 --dct_coefficient_count 10" in message


def test_hint_for_a_dnn_input_of_250():
    settings = features.settings_from_flags(parse(["--tflite_path", "x.tflite"]))
    hint = tflite_model.fingerprint_hint(250, settings)
    assert "25 frames x 10 coefficients" in hint
    assert "--window_stride_ms 40 --dct_coefficient_count 10" in hint
    # A [batch, frames, coefficients] input shape tells them apart.
    assert "--dct_coefficient_count 5" in tflite_model.fingerprint_hint(250, settings, [1, 50, 5])


def test_wrong_label_count_is_a_clear_error(dnn_files):
    model = tflite_model.TFLiteModel(dnn_files["float"])
    args = parse(["--tflite_path", dnn_files["float"]] + TINY_FEATURE_FLAGS)
    settings = features.settings_from_flags(args)
    with pytest.raises(UsageError, match="gives 4 scores, but the labels are 12"):
        model.check_settings(settings, ["x"] * 12)


def test_not_a_model_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a flatbuffer")
    with pytest.raises(UsageError, match="broken.tflite"):
        tflite_model.TFLiteModel(str(path))
    with pytest.raises(UsageError, match="no such file"):
        tflite_model.TFLiteModel(str(tmp_path / "missing.tflite"))


def test_float_model_matches_keras_in_batches(dnn_files):
    inputs = fingerprints(600, seed=3)
    model = tflite_model.TFLiteModel(dnn_files["float"], batch_size=256)
    scores = model.predict(inputs)
    assert model.batched
    np.testing.assert_allclose(scores, dnn_files["model"](inputs).numpy(), atol=1e-5)


def test_quantized_input_gives_what_float_input_gives(dnn_files):
    # The same calibration: an int8-input model after our quantization of the input
    # must predict exactly what the float-input model (QUANTIZE op inside) predicts.
    inputs = fingerprints(300, seed=4)
    float_io = tflite_model.TFLiteModel(dnn_files["quantized"]).predict(inputs)
    int8_model = tflite_model.TFLiteModel(dnn_files["int8"])
    assert int8_model.input_type == "int8"
    np.testing.assert_allclose(int8_model.predict(inputs), float_io, atol=1e-6)


def test_model_with_a_fixed_batch_runs_one_clip_at_a_time(tmp_path):
    # A graph that hard-codes batch 1 (reshape to [1, ...]) cannot be resized to a batch.
    inputs = tf.keras.Input((20,), batch_size=1)
    hidden = tf.keras.layers.Lambda(lambda x: tf.reshape(x, [1, 4, 5]))(inputs)
    hidden = tf.keras.layers.Lambda(lambda x: tf.reshape(tf.reduce_sum(x, axis=1) , [1, 5]))(hidden)
    keras_model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(hidden))
    content = quantization.to_tflite(keras_model, FLOAT32, None)
    model = tflite_model.TFLiteModel(content=content, batch_size=64)
    data = fingerprints(10, size=20)
    scores = model.predict(data)
    assert model.batched is False
    expected = np.concatenate([keras_model(data[i:i + 1]).numpy() for i in range(10)])
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_main_on_data_dir_partitions_writes_json(dnn_files, tmp_path, capsys):
    data_dir = make_speech_commands(tmp_path / "data", words=("yes", "no"), unknown_words=("cat",))
    output = tmp_path / "figures.json"
    test_tflite.main(parse(["--tflite_path", dnn_files["quantized"], "--data_dir", str(data_dir),
                            "--data_url", "", "--wanted_words", "yes,no",
                            "--output_json", str(output)] + TINY_FEATURE_FLAGS))
    figures = json.load(open(output))
    assert sorted(figures) == ["testing", "validation"]
    assert figures["testing"]["labels"] == ["_silence_", "_unknown_", "yes", "no"]
    assert "accuracy" in capsys.readouterr().out


def test_mismatched_flags_exit_2_with_one_line(dnn_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.run(test_tflite.main, test_tflite.build_parser(),
                ["--tflite_path", dnn_files["float"], "--test_dir", str(tmp_path)])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "--window_stride_ms 20 --dct_coefficient_count 10" in error
    assert error.strip().count("\n") == 0 and "Traceback" not in error


# ---------------------------------------------------------------- label_wav.py


def test_label_wav_with_tflite_and_checkpoint(dnn_files, tmp_path, capsys):
    rng = np.random.default_rng(0)
    clip = str(tmp_path / "clip.wav")
    write_wav(clip, rng.integers(-3000, 3000, 16000))
    # Another rate, stereo, float samples: read through librosa/soundfile and resampled.
    import soundfile
    stereo = str(tmp_path / "stereo_8k.wav")
    soundfile.write(stereo, rng.uniform(-0.1, 0.1, (8000, 2)).astype(np.float32), 8000,
                    subtype="FLOAT")
    labels = tmp_path / "labels.txt"
    labels.write_text("_silence_\n_unknown_\nyes\nno\n")
    base = ["--labels", str(labels), "--how_many_labels", "2"] + TINY_FEATURE_FLAGS
    label_wav.main(label_wav.build_parser().parse_args(
        base + ["--tflite_path", dnn_files["float"], clip, stereo]))
    from_tflite = capsys.readouterr().out.splitlines()
    assert from_tflite[0] == f"{clip}:" and from_tflite[3] == f"{stereo}:"
    assert len(from_tflite) == 6 and all("(score = " in line for line in from_tflite[1:3])
    label_wav.main(label_wav.build_parser().parse_args(
        base + ["--model_architecture", "dnn", "--model_size_info", "16", "16",
                "--checkpoint", dnn_files["checkpoint"], "--wav", clip, stereo]))
    from_checkpoint = capsys.readouterr().out.splitlines()
    # Same model, same labels, same order, scores to 4 decimals.
    assert [line.split(" (")[0] for line in from_checkpoint] == \
        [line.split(" (")[0] for line in from_tflite]
    top = label_wav.top_labels(np.array([0.1, 0.5, 0.3, 0.1]), ["a", "b", "c", "d"], 2)
    assert top == [("b", 0.5), ("c", 0.3)]


def test_label_wav_errors_are_one_line(dnn_files, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")  # three labels, the model gives four scores
    with pytest.raises(SystemExit) as exit:
        cli.run(label_wav.main, label_wav.build_parser(),
                ["--tflite_path", dnn_files["float"], "--labels", str(labels),
                 str(tmp_path / "missing.wav")] + TINY_FEATURE_FLAGS)
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "--labels" in error and error.strip().count("\n") == 0
    with pytest.raises(UsageError, match="missing.wav"):
        label_wav.main(label_wav.build_parser().parse_args(
            ["--tflite_path", dnn_files["float"], str(tmp_path / "missing.wav")] +
            ["--wanted_words", "yes,no"] + TINY_FEATURE_FLAGS))
    with pytest.raises(UsageError, match="--tflite_path FILE, or --checkpoint"):
        label_wav.main(label_wav.build_parser().parse_args(
            [str(tmp_path / "missing.wav")] + TINY_FEATURE_FLAGS))


# ---------------------------------------------------------------- without TensorFlow

# Runs in a fresh interpreter where importing TensorFlow (or what needs it) fails, as on
# a machine with only ai-edge-litert and numpy: the deployment tools, end to end.
WITHOUT_TENSORFLOW = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, NoTensorFlow())
import json
import label_wav
import test_streaming_accuracy
import test_tflite
from kws.runtime import report
argv = json.loads(sys.argv[1])
test_tflite.main(test_tflite.build_parser().parse_args(argv["test_tflite"]))
test_tflite.main(test_tflite.build_parser().parse_args(argv["test_tflite"] + ["--runtime", "tflm"]))
label_wav.main(label_wav.build_parser().parse_args(argv["label_wav"]))
test_streaming_accuracy.main(test_streaming_accuracy.build_parser().parse_args(
    argv["test_streaming_accuracy"]))
print(report.format_report(report.analyze(open(argv["tflite"], "rb").read())))
print("modules:", " ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_deployment_tools_run_without_tensorflow(dnn_files, tmp_path):
    rng = np.random.default_rng(5)
    for word in ("yes", "no"):
        for n in range(3):
            write_wav(tmp_path / "test" / word / f"{word}{n}.wav", rng.integers(-3000, 3000, 16000))
    clip = str(write_wav(tmp_path / "clip.wav", rng.integers(-3000, 3000, 12000)))
    recording = str(write_wav(tmp_path / "recording.wav", rng.integers(-3000, 3000, 48000)))
    (tmp_path / "truth.txt").write_text("yes,1000\n")
    model = ["--tflite_path", dnn_files["quantized"], "--wanted_words", "yes,no"] + TINY_FEATURE_FLAGS
    argv = {"test_tflite": model + ["--test_dir", str(tmp_path / "test"), "--data_url", ""],
            "label_wav": model + [clip, recording],
            "test_streaming_accuracy": model + ["--wav", recording, "--ground_truth",
                                                str(tmp_path / "truth.txt")],
            "tflite": dnn_files["quantized"]}
    run = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, json.dumps(argv)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for printed in ("accuracy", "(score = ", "false_alarms_per_hour", "parameters"):
        assert printed in run.stdout
    imported = set(run.stdout.split("modules: ")[1].split())
    assert not imported & {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras",
                           "matplotlib"}  # matplotlib only when --plot_dir asks for a picture


# ---------------------------------------------------------------- Arm's published int8 models

ARM = SHARED / "reference" / "arm_pretrained"
DEV_SET = SHARED / "data" / "speech_commands_test_v0.02_dev"
# Accuracy of Arm's int8 files on the dev folder, from ../shared/README.md.
ARM_INT8 = {
    "DS_CNN/DS_CNN_S": 0.8985, "DS_CNN/DS_CNN_M": 0.9105, "DS_CNN/DS_CNN_L": 0.9109,
    "CNN/CNN_S": 0.8934, "CNN/CNN_M": 0.8901, "CNN/CNN_L": 0.8992,
    "DNN/DNN_S": 0.8035, "DNN/DNN_M": 0.8309, "DNN/DNN_L": 0.8378,
    "BASIC_LSTM/Basic_LSTM_S": 0.8543, "BASIC_LSTM/Basic_LSTM_M": 0.8663,
    "BASIC_LSTM/Basic_LSTM_L": 0.8798,
}


@pytest.fixture(scope="module")
def dev_fingerprints():
    if not DEV_SET.is_dir() or not ARM.is_dir():
        pytest.skip(f"needs Arm's models and the dev folder under {SHARED} (../shared)")
    sets = {}
    for stride in ("20", "40"):
        args = parse(["--tflite_path", "x", "--test_dir", str(DEV_SET), "--data_url", "",
                      "--window_size_ms", "40", "--window_stride_ms", stride,
                      "--dct_coefficient_count", "10"])
        settings = features.settings_from_flags(args)
        sets[stride] = evaluation.test_sets(speech_commands.DataSource.from_flags(args, settings))[str(DEV_SET)]
    return sets


@pytest.mark.parametrize("name", sorted(ARM_INT8))
def test_reproduces_arm_int8_accuracy(dev_fingerprints, name):
    path = next((ARM / name).glob("*.tflite"))
    fingerprints_, labels = dev_fingerprints["40" if name.startswith("DNN") else "20"]
    predictions = np.argmax(tflite_model.TFLiteModel(str(path)).predict(fingerprints_), axis=1)
    assert float(np.mean(predictions == labels)) == pytest.approx(ARM_INT8[name], abs=5e-5)
