"""Tests of raw-audio models (convert.py --include_features, kws/export/raw_audio.py): their scores equal
the plain pipeline's (numpy fingerprint, then the plain .tflite), the front end stays float
in the int8 modes, the scripts feed them audio, and the unsupported cases are one clear line.

Equality: the largest difference of a softmax score between the raw-audio .tflite fed
clips and the plain .tflite fed numpy fingerprints (features.Fingerprinter) of the same
clips, measured on the 120 clips of the tiny generated set (a tiny trained DS-CNN) and,
with bench/bench_raw_audio.py, on the 2,738 clips of the dev folder (DS_CNN_S):
- float32 (int16 or float32 input): 9e-8 here, 6e-6 on the dev folder (the float32
  graph MFCC against the float64 numpy one): tolerance 1e-5;
- float16: 6e-5 here, 0.026 on the dev folder (the window, mel and DCT matrices in
  float16 too): tolerance 1e-3;
- full-integer int8 (float32, int8 and uint8 output), calibrated on the same clips: 0 here;
  on the dev folder 12 clips of 2,738 differ, by at most 9 output steps of 1/256 (a
  fingerprint value on the other side of an int8 rounding step): tolerance 10/256;
and the same top label on every clip.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import convert
from kws import cli, features, tf_env, vocabulary
from kws.cli import UsageError
from kws.data import audio_io, speech_commands
from kws.detection import detector
from kws.export import quantization, raw_audio
from kws.models import registry
from kws.runtime import report as tflite_report
from kws.runtime import tflite_model, tflm
from kws.runtime.tflite_model import TFLiteModel
from kws.training import checkpoints

from conftest import ROOT, TINY_FEATURE_FLAGS, TINY_SIZE_INFO, make_speech_commands, write_wav

tf = tf_env.import_tensorflow()

WORDS = "yes,no,up"
SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)  # TINY_FEATURE_FLAGS
FLOAT_TOLERANCE = 1e-5
FLOAT16_TOLERANCE = 1e-3
INT8_TOLERANCE = 10 / 256
FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]
INT8 = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
INT8_IO = quantization.MODES[(quantization.FULL_INTEGER, "int8")]
FLOAT16 = quantization.MODES[(quantization.FLOAT16, "float32")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DS-CNN trained on the generated set, its checkpoint, and the set's clips."""
    root = tmp_path_factory.mktemp("raw_audio")
    data_dir = make_speech_commands(root / "speech", words=("yes", "no", "up"))
    paths = [path for path in sorted(data_dir.glob("*/*.wav"))
             if path.parent.name != "_background_noise_"]
    clips, _, _ = audio_io.load_clips([str(path) for path in paths], 16000, 16000)
    labels = np.array([{"yes": 2, "no": 3, "up": 4}.get(path.parent.name, 1) for path in paths])
    tf.keras.utils.set_random_seed(0)
    model = registry.create_model(SETTINGS, "ds_cnn", TINY_SIZE_INFO["ds_cnn"], label_count=5)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(features.Fingerprinter(SETTINGS)(clips), labels, epochs=30, verbose=0)
    checkpoint = str(root / "ckpt" / "ds_cnn")
    checkpoints.save_weights_atomically(model, checkpoint)
    test_dir = root / "test"
    for label, source in (("yes", "yes"), ("no", "no"), ("up", "up"), ("_unknown_", "cat")):
        for path in sorted((data_dir / source).glob("*.wav"))[:3]:
            write_wav(test_dir / label / path.name, audio_io.load_clips([str(path)], 16000, 16000)[0][0])
    base = ["--model_architecture", "ds_cnn", "--model_size_info"] + \
        [str(value) for value in TINY_SIZE_INFO["ds_cnn"]] + \
        ["--checkpoint", checkpoint, "--wanted_words", WORDS, "--data_url", ""] + TINY_FEATURE_FLAGS
    rng = np.random.default_rng(0)
    return {"model": model, "clips": clips, "calibration": clips[rng.permutation(len(clips))[:40]],
            "data_dir": str(data_dir), "test_dir": str(test_dir), "base": base, "root": root}


@pytest.fixture(scope="module")
def converted(trained):
    """(mode, input type) -> the plain and the raw-audio .tflite of the trained model, each
    converted once for the module."""
    cache = {}
    fingerprinter = features.Fingerprinter(SETTINGS)

    def convert(mode, input_type="int16"):
        calibration_clips = trained["calibration"] if mode.calibrated else None
        if mode not in cache:
            cache[mode] = quantization.to_tflite(
                trained["model"], mode,
                fingerprinter(calibration_clips) if mode.calibrated else None, 1.0)
        if (mode, input_type) not in cache:
            cache[mode, input_type] = raw_audio.convert_raw_audio(
                trained["model"], SETTINGS, mode, input_type, calibration_clips, 1.0)[0]
        return cache[mode], cache[mode, input_type]
    return convert


def plain_and_raw(trained, converted, mode, input_type="int16"):
    """The plain .tflite fed numpy fingerprints, and the raw-audio one fed the clips: scores."""
    plain, raw = converted(mode, input_type)
    audio = TFLiteModel(content=raw)
    audio.check_settings(SETTINGS)
    assert audio.takes_audio and audio.input_type == input_type
    clips = trained["clips"]
    return TFLiteModel(content=plain).predict(features.Fingerprinter(SETTINGS)(clips)), \
        audio.predict(clips), raw


@pytest.mark.parametrize("quantize_mode,inference_type,input_type", [
    (quantization.NO_QUANTIZATION, "float32", "int16"),
    (quantization.NO_QUANTIZATION, "float32", "float32"),
    (quantization.FLOAT16, "float32", "int16"),
    (quantization.FULL_INTEGER, "float32", "int16"),
    (quantization.FULL_INTEGER, "int8", "float32"),
    (quantization.FULL_INTEGER, "uint8", "int16"),
])
def test_scores_equal_the_plain_pipeline(trained, converted, quantize_mode, inference_type,
                                         input_type):
    mode = quantization.MODES[(quantize_mode, inference_type)]
    plain, raw, _ = plain_and_raw(trained, converted, mode, input_type)
    tolerance = (INT8_TOLERANCE if mode.calibrated else
                 FLOAT16_TOLERANCE if mode.float16_weights else FLOAT_TOLERANCE)
    assert np.abs(plain - raw).max() <= tolerance
    assert np.array_equal(plain.argmax(axis=1), raw.argmax(axis=1))
    assert plain.std(axis=0).max() > 0.05  # the scores vary: the comparison means something


def test_digital_silence_scores_as_in_the_plain_pipeline(converted):
    silence = np.zeros((1, 16000), np.int16)  # log-mel at its floor: float16 kept it finite
    for mode in (FLOAT32, FLOAT16, INT8):
        plain, raw = (TFLiteModel(content=content) for content in converted(mode))
        raw.check_settings(SETTINGS)
        expected = plain.predict(features.Fingerprinter(SETTINGS)(silence))
        assert np.abs(raw.predict(silence) - expected).max() <= (
            INT8_TOLERANCE if mode.calibrated else FLOAT16_TOLERANCE)


def test_int8_front_end_stays_float_and_the_network_is_int8(converted):
    content = converted(INT8_IO, "float32")[1]
    ops = raw_audio_ops(content)
    types = dict((name, (inputs, outputs)) for name, inputs, outputs in ops)
    assert types["RFFT2D"][0][0] == "FLOAT32" and types["LOG"][1] == ["FLOAT32"]
    quantize = [i for i, (name, _, _) in enumerate(ops) if name == "QUANTIZE"]
    assert len(quantize) == 1  # one QUANTIZE: the floored fingerprint
    assert ops[quantize[0] - 1][0] == "MAXIMUM"  # tf.maximum(fingerprint, floor)
    assert all(outputs == ["INT8"] for _, _, outputs in ops[quantize[0]:])
    report = tflite_report.analyze(content)
    assert report["input"][0]["type"] == "float32" and report["output"][0]["type"] == "int8"


def raw_audio_ops(content):
    """(op, input types, output types) of the model's ops, in execution order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    type_names = {value: name for name, value in vars(schema.TensorType).items()
                  if not name.startswith("_")}
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = tflite_report.OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        ops.append((name, [type_names[graph.tensors[i].type] for i in op.inputs if i >= 0],
                    [type_names[graph.tensors[i].type] for i in op.outputs]))
    return ops


def test_floor_clips_the_fingerprint_as_the_plain_input_range(trained):
    clips = features.clips_as(trained["calibration"], "int16")
    floor = -50.0
    audio_model = raw_audio.with_features(trained["model"], SETTINGS, "int16", floor)
    fingerprint = audio_model.get_layer(raw_audio.FRONT_END)(tf.constant(clips[:4])).numpy()
    expected = np.maximum(features.Fingerprinter(SETTINGS)(clips[:4]), floor)
    assert np.abs(fingerprint - expected).max() < 1e-3
    silent = audio_model.get_layer(raw_audio.FRONT_END)(tf.zeros([1, 16000], tf.int16)).numpy()
    assert silent.min() == floor


def test_clips_as_reads_int16_and_float_at_one_scale():
    clips = np.array([[-32768, -1, 0, 16384, 32767]], np.int16)
    as_float = features.clips_as(clips, np.float32)
    assert as_float.tolist() == [[-1.0, -1 / 32768, 0.0, 0.5, 32767 / 32768]]
    assert np.array_equal(features.clips_as(as_float, np.int16), clips)
    assert features.clips_as(np.array([[1.5, -1.5]]), np.int16).tolist() == [[32767, -32768]]


def test_partition_clips_are_what_the_partition_fingerprints_are_computed_from(trained):
    args = convert.build_parser().parse_args(trained["base"] + ["--data_dir", trained["data_dir"]])
    data = speech_commands.DataSource.from_flags(args, features.settings_from_flags(args))
    clips, labels = data.processor.clips("testing")
    fingerprints, expected_labels = data.processor.fingerprints("testing")
    assert clips.dtype == np.int16 and np.array_equal(labels, expected_labels)
    assert np.array_equal(features.Fingerprinter(data.model_settings)(clips), fingerprints)


def run_script(script, flags, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + flags,
                          capture_output=True, text=True, cwd=str(cwd), timeout=300)


def test_convert_test_tflite_and_label_wav_as_a_user_would(trained, tmp_path):
    output = str(tmp_path / "ds_cnn_audio_quantized.tflite")
    report_path = str(tmp_path / "report.json")
    run = run_script("convert.py", trained["base"] + [
        "--data_dir", trained["data_dir"], "--test_dir", trained["test_dir"],
        "--include_features", "--inference_type", "int8", "--output_file", output,
        "--report_json", report_path, "--representative_samples", "40"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "int16 audio input" in run.stdout and "RFFT2D" in run.stdout
    report = json.load(open(report_path))
    assert report["include_features"] == "int16"
    assert report["report"]["input"][0]["shape"] == [1, 16000]
    assert report["accuracy"]["count"] == 12
    assert report["report"]["metadata"]["input"] == {
        "kind": "audio", "dtype": "int16", "streaming": False, "samples_per_call": 16000}

    figures_path = str(tmp_path / "figures.json")
    run = run_script("test_tflite.py", ["--tflite_path", output, "--test_dir", trained["test_dir"],
                                        "--data_url", "", "--output_json", figures_path],
                     tmp_path)  # the labels and fingerprint flags come from the file
    assert run.returncode == 0, run.stderr
    assert "raw audio" in run.stdout
    figures = json.load(open(figures_path))[trained["test_dir"]]
    assert figures["accuracy"] == pytest.approx(report["accuracy"]["tflite"])

    clip = sorted(os.listdir(os.path.join(trained["test_dir"], "yes")))[0]
    run = run_script("label_wav.py", ["--tflite_path", output,
                                      os.path.join(trained["test_dir"], "yes", clip)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 3 and "score =" in run.stdout


def test_recordings_slide_the_raw_audio_model_like_the_plain_one(trained, converted):
    plain, raw = converted(FLOAT32)
    recording = np.concatenate(list(trained["clips"][::6]))
    scorers = [TFLiteModel(content=content) for content in (plain, raw)]
    for scorer in scorers:
        scorer.check_settings(SETTINGS)
    assert [detector.takes_audio(scorer) for scorer in scorers] == [False, True]
    labels = vocabulary.prepare_words_list(WORDS.split(","))
    settings = detector.DetectionSettings(30.0, 500.0, 0.5, 1000.0)
    expected, found = (detector.stream_scores(recording, SETTINGS, scorer, labels, settings)
                       for scorer in scorers)
    assert np.array_equal(expected.top, found.top)
    assert np.abs(expected.top_score - found.top_score).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("flags", [
    ["--include_features", "--inference_type", "int16"],
    ["--include_features", "--quantize_mode", "dynamic_range"],
    ["--include_features", "pcm8"],
])
def test_unsupported_cases_are_one_line(trained, tmp_path, monkeypatch, capsys, flags):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli.run(convert.main, convert.build_parser(),
                trained["base"] + flags + ["--test_dir", trained["test_dir"]])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "--include_features" in error and "Traceback" not in error
    assert error.strip().count("\n") <= 1  # argparse adds its usage line
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(not tflm.available(), reason="needs the tflite-micro package")
def test_tflm_cannot_run_it_and_says_which_op(converted):
    content = converted(INT8)[1]
    with pytest.raises(UsageError, match="RFFT2D") as error:
        TFLiteModel(content=content, runtime=tflite_model.TFLM)
    assert "\n" not in str(error.value)
    assert "RFFT2D" in tflm.report_figures(content, "audio.tflite")["tflm_error"]


def test_wrong_clip_length_names_both_inputs(trained, converted):
    model = TFLiteModel(content=converted(FLOAT32)[1])
    args = convert.build_parser().parse_args(trained["base"] + ["--clip_duration_ms", "900"])
    settings = features.settings_from_flags(args)
    with pytest.raises(UsageError, match=r"nor clips of 14400 samples \(a raw-audio model\)"):
        model.check_settings(settings)
