"""Streaming models (kws/export/stateful_model.py, kws/runtime/stateful_runner.py, convert.py --streaming): fed a clip one
stride at a time from a reset, every streamable architecture gives the non-streaming model's
scores (Keras, .tflite float and int8, LiteRT and TFLM); the others are refused in one line;
a recording is scored natively, one call per stride; and the command line end to end."""
import os
import subprocess
import sys

import numpy as np
import pytest

import convert
from kws import features, tf_env
from kws.cli import UsageError
from kws.detection import detector
from kws.export import quantization, stateful_model
from kws.models import registry
from kws.runtime import metadata, tflite_model
from kws.training import checkpoints

from conftest import (ROOT, TINY_FEATURE_FLAGS, TINY_SIZE_INFO, make_speech_commands,
                      mfcc_like_fingerprints, tiny_settings, write_wav)

tf = tf_env.import_tensorflow()

STREAMABLE = ("cnn", "basic_lstm", "lstm", "gru", "crnn", "svdf", "svdf_resnet")
REFUSED = {"single_fc": "reads the whole flattened fingerprint",
           "dnn": "reads the whole flattened fingerprint",
           "ds_cnn": "pads SAME along time", "tc_resnet": "pads SAME along time",
           "mobilenet": "pads SAME along time", "mobilenet_v2": "pads SAME along time",
           "inception": "pads SAME along time", "inception_resnet": "pads SAME along time",
           "xception": "pads SAME along time", "bc_resnet": "pads SAME along time"}
SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)  # 49 frames
LABELS = 4
FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]
INT8 = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
FLOAT_TOLERANCE = 1e-5
# int8 streaming .tflite against the float Keras model, on the tiny random models, 32 clips:
# largest score differences 0.004 (svdf_resnet) to 0.15 (svdf), means 0.001 to 0.019.
INT8_TOLERANCE, INT8_MEAN_TOLERANCE = 0.2, 0.03


def tiny_model(architecture, settings=SETTINGS, seed=0, size_info=None):
    tf.keras.utils.set_random_seed(seed)
    return registry.create_model(settings, architecture, size_info or TINY_SIZE_INFO[architecture],
                                 label_count=LABELS)


# ---------------------------------------------------------------- Keras


# mobilenet pads SAME in its blocks of stride 1 (its published sizes) and VALID in those of
# stride 2: the tiny one, all stride 2, streams.
@pytest.mark.parametrize("architecture", STREAMABLE + ("mobilenet",))
@pytest.mark.parametrize("window_size_ms, window_stride_ms", [(40, 20), (30, 10)])
def test_streamed_clip_scores_equal_the_model(architecture, window_size_ms, window_stride_ms):
    settings = features.prepare_model_settings(16000, 1000, window_size_ms, window_stride_ms, 10)
    model = tiny_model(architecture, settings)
    streaming_model = stateful_model.streaming_model(model, settings, architecture)
    inputs = mfcc_like_fingerprints(3, settings)
    scores, calls = streaming_model.stream_clips(inputs)
    np.testing.assert_allclose(scores, model(inputs, training=False).numpy(),
                               atol=FLOAT_TOLERANCE)
    stride = streaming_model.frames_per_call
    assert len(calls) * stride == settings.spectrogram_length + streaming_model.lead_frames
    assert streaming_model.lead_frames < stride
    assert {layer.name for layer in streaming_model.source.layers} == {
        layer.name for layer in model.layers}  # the same layers, not a copy


def test_time_strides_make_calls_of_several_frames():
    assert stateful_model.streaming_model(tiny_model("crnn"), SETTINGS, "crnn").frames_per_call == 2
    svdf_resnet = stateful_model.streaming_model(tiny_model("svdf_resnet"), SETTINGS, "svdf_resnet")
    assert svdf_resnet.frames_per_call == 4 and svdf_resnet.lead_frames == 3


@pytest.mark.parametrize("architecture", sorted(REFUSED))
def test_architectures_that_cannot_stream_say_why_in_one_line(architecture):
    with pytest.raises(UsageError) as error:
        size_info = registry.MODELS[architecture].default_size_info if architecture == "mobilenet" \
            else None
        settings = tiny_settings(architecture)
        model = tiny_model(architecture, settings, size_info=size_info)
        stateful_model.streaming_model(model, settings, architecture)
    message = str(error.value)
    assert message.startswith(f"{architecture} cannot stream: its layer ")
    assert REFUSED[architecture] in message and "\n" not in message


# ---------------------------------------------------------------- .tflite


@pytest.fixture(scope="module")
def converted():
    """architecture -> (model, {"float": bytes, "int8": bytes}), converted once."""
    cache = {}

    def get(architecture):
        if architecture not in cache:
            model = tiny_model(architecture)
            streaming_model = stateful_model.streaming_model(model, SETTINGS, architecture)
            cache[architecture] = (model, {
                "float": quantization.to_tflite(streaming_model, FLOAT32),
                "int8": quantization.to_tflite(streaming_model, INT8, mfcc_like_fingerprints(12))})
        return cache[architecture]
    return get


@pytest.mark.parametrize("architecture", STREAMABLE)
def test_tflite_streaming_model_gives_the_model_scores(converted, architecture):
    model, contents = converted(architecture)
    inputs = mfcc_like_fingerprints(4, seed=1)
    expected = model(inputs, training=False).numpy()
    for kind, tolerance in (("float", FLOAT_TOLERANCE), ("int8", INT8_TOLERANCE)):
        tflite = tflite_model.TFLiteModel(content=contents[kind])
        assert tflite.stream is not None and len(tflite.interpreter.get_input_details()) > 1
        scores = tflite.predict(inputs)
        np.testing.assert_allclose(scores, expected, atol=tolerance,
                                   err_msg=f"{architecture} {kind}")
    assert np.abs(scores - expected).mean() < INT8_MEAN_TOLERANCE


@pytest.mark.parametrize("architecture", STREAMABLE)
def test_tflm_runs_the_int8_streaming_model(converted, architecture):
    _, contents = converted(architecture)
    inputs = mfcc_like_fingerprints(2, seed=2)
    litert = tflite_model.TFLiteModel(content=contents["int8"]).predict(inputs)
    tflm = tflite_model.TFLiteModel(content=contents["int8"], runtime="tflm").predict(inputs)
    np.testing.assert_allclose(tflm, litert, atol=0.01)


@pytest.mark.parametrize("architecture, every_window", [("cnn", True), ("svdf", True),
                                                        ("gru", False)])
def test_recording_scores_match_the_windows(converted, architecture, every_window):
    """Streamed over a recording from a reset, a model without recurrence or causal padding
    scores every window as the non-streaming model does; a recurrent one only the first."""
    model, contents = converted(architecture)
    runner = tflite_model.TFLiteModel(content=contents["float"]).stream
    s = SETTINGS
    frames = mfcc_like_fingerprints(1, features.prepare_model_settings(16000, 3000, 40, 20, 10))
    frames = frames.reshape(-1, s.dct_coefficient_count)
    scores, starts = runner.recording_scores(frames, s)
    first = starts // s.window_stride_samples
    windows = np.stack([frames[k:k + s.spectrogram_length].reshape(-1) for k in first])
    expected = model(windows, training=False).numpy()
    np.testing.assert_allclose(scores[0], expected[0], atol=FLOAT_TOLERANCE)
    assert np.allclose(scores, expected, atol=FLOAT_TOLERANCE) == every_window
    assert np.all(np.diff(first) == runner.per_call)


def test_settings_that_contradict_the_model_are_one_clear_line(converted):
    tflite = tflite_model.TFLiteModel(content=converted("svdf")[1]["float"])
    other = features.prepare_model_settings(16000, 1000, 30, 10, 10)
    with pytest.raises(UsageError, match="streaming model of clips of 49 frames x 10"):
        tflite.check_settings(other)


@pytest.mark.parametrize("input_type", ["int16", "float32"])
def test_streaming_with_features_takes_one_stride_of_audio(input_type):
    """--include_features: the MFCC computed inside from one stride of audio and the last
    window - stride samples; float in Keras and LiteRT, int8 within the int8 tolerance."""
    model = tiny_model("crnn")
    streaming_model = stateful_model.streaming_model(model, SETTINGS, "crnn", input_type)
    clips = (np.random.default_rng(0).normal(0, 0.1, (3, 16000)) * 32767).astype(np.int16)
    expected = model(features.Fingerprinter(SETTINGS)(clips), training=False).numpy()
    scores, _ = streaming_model.stream_clips(features.clips_as(clips, input_type))
    np.testing.assert_allclose(scores, expected, atol=FLOAT_TOLERANCE)
    assert streaming_model.samples_per_call == 2 * SETTINGS.window_stride_samples
    assert streaming_model.state_shapes[0] == (SETTINGS.window_size_samples
                                               - SETTINGS.window_stride_samples,)
    for mode, tolerance in ((FLOAT32, FLOAT_TOLERANCE), (INT8, INT8_TOLERANCE)):
        content, _ = stateful_model.convert_streaming(streaming_model, mode,
                                                clips if mode.calibrated else None, 1.0)
        tflite = tflite_model.TFLiteModel(content=content)
        tflite.check_settings(SETTINGS)
        assert tflite.takes_audio
        np.testing.assert_allclose(tflite.predict(clips), expected, atol=tolerance)


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def svdf_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    data_dir = make_speech_commands(root / "data", words=("yes", "no"), unknown_words=("cat",))
    model = tiny_model("svdf")
    checkpoint = str(root / "ckpt" / "svdf")
    checkpoints.save_weights_atomically(model, checkpoint)
    base = ["--model_architecture", "svdf", "--model_size_info"] + \
        [str(value) for value in TINY_SIZE_INFO["svdf"]] + \
        ["--checkpoint", checkpoint, "--wanted_words", "yes,no", "--data_url", ""] + \
        TINY_FEATURE_FLAGS
    return {"root": root, "data_dir": str(data_dir), "base": base, "model": model}


def test_convert_streaming_then_detect_on_a_recording(svdf_checkpoint, tmp_path):
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "convert.py"), "--streaming"] +
        svdf_checkpoint["base"] + ["--data_dir", svdf_checkpoint["data_dir"],
                                   "--representative_samples", "10"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    output = tmp_path / "svdf_streaming_quantized.tflite"
    assert output.exists() and "Deployment report of" in run.stdout
    assert metadata.read_metadata(output.read_bytes())["input"] == {
        "kind": "fingerprint", "streaming": True, "frames_per_call": 1, "features_per_frame": 10}
    audio = np.random.default_rng(0).integers(-3000, 3000, 16000 * 4).astype(np.int16)
    wav = write_wav(tmp_path / "stream.wav", audio)
    truth = tmp_path / "truth.txt"
    truth.write_text("yes,1000\n")
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "test_streaming_accuracy.py"), "--wav", str(wav),
         "--ground_truth", str(truth), "--tflite_path", str(output)],  # the rest from the file
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Scored 151 windows of 4.0 s" in run.stdout and "every 20 ms" in run.stdout


def test_stateful_scores_run_one_call_per_stride(svdf_checkpoint, tmp_path):
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    streaming_model = stateful_model.streaming_model(svdf_checkpoint["model"], settings, "svdf")
    tflite = tflite_model.TFLiteModel(content=quantization.to_tflite(streaming_model,
                                                                         FLOAT32))
    audio = np.random.default_rng(1).integers(-3000, 3000, 16000 * 2).astype(np.int16)
    labels = ["_silence_", "_unknown_", "yes", "no"]
    detection = detector.DetectionSettings(30.0, 0.0, 0.7, 1500.0)
    stream = detector.stream_scores(audio, settings, tflite, labels, detection)
    assert stream.stride_ms == 20 and len(stream.times_ms) == 51
    windows = detector.SlidingWindows(audio, settings, settings.window_stride_samples)
    expected = svdf_checkpoint["model"](windows.fingerprints(np.arange(len(windows))),
                                        training=False).numpy()
    np.testing.assert_array_equal(stream.top, expected.argmax(axis=1))


def test_convert_refuses_an_architecture_that_cannot_stream(tmp_path):
    args = convert.build_parser().parse_args(
        ["--streaming", "--model_architecture", "ds_cnn", "--no-quantize", "--data_url", "",
         "--checkpoint", str(tmp_path / "none")] + TINY_FEATURE_FLAGS)
    model = registry.create_model(features.prepare_model_settings(16000, 1000, 40, 20, 10),
                                  "ds_cnn", label_count=12)
    with pytest.raises(UsageError, match="^ds_cnn cannot stream: .* pads SAME along time"):
        stateful_model.from_flags(args, model, SETTINGS)
