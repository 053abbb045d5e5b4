"""kws/runtime/metadata.py: a .tflite that carries its own settings. The metadata is added without
moving a byte of the model (LiteRT and TFLM compute what they computed, the weights keep
their 16-byte alignment), is read without TensorFlow, tolerates fields it does not know and
lacks, and replaces the flags of the deployment tools, with one warning line when a flag
given disagrees (the file wins unless --force_flags)."""
import dataclasses
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from test_tflite_eval import SETTINGS, dnn_files  # noqa: F401  (the module's fixture)

import test_tflite
from kws import cli, features
from kws.runtime import metadata as model_metadata
from kws.runtime import report as tflite_report
from kws.runtime import tflite_model

from conftest import ROOT, SHARED, write_wav

LABELS = ["_silence_", "_unknown_", "yes", "no"]
ARM_DS_CNN_S = SHARED / "reference" / "arm_pretrained" / "DS_CNN" / "DS_CNN_S" / "ds_cnn_s_quantized.tflite"


def payload(**changes):
    return {**model_metadata.describe(SETTINGS, LABELS), **changes}


def data_positions(content: bytes) -> list:
    """Where each non-empty buffer's data starts, in buffer order."""
    model = model_metadata.schema.Model.GetRootAs(content, 0)
    positions = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            positions.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    return positions


def test_metadata_keeps_every_byte_and_the_alignment_of_the_model(dnn_files):
    content = open(dnn_files["quantized"], "rb").read()
    assert model_metadata.read_metadata(content) is None  # as quantization wrote it
    with_metadata = model_metadata.add_metadata(content, payload())
    padded = content + b"\0" * (-len(content) % 16)
    assert with_metadata.endswith(padded) and len(with_metadata) - len(padded) < 1024
    shift = len(with_metadata) - len(padded)
    before, after = data_positions(content), data_positions(with_metadata)
    assert after[:len(before)] == [position + shift for position in before] and shift % 16 == 0
    assert model_metadata.read_metadata(with_metadata) == json.loads(json.dumps(payload()))
    rng = np.random.default_rng(0)
    inputs = rng.normal(0, 8, (8, SETTINGS.fingerprint_size)).astype(np.float32)
    for runtime in (tflite_model.LITERT, tflite_model.TFLM):
        np.testing.assert_array_equal(
            tflite_model.TFLiteModel(content=with_metadata, runtime=runtime).predict(inputs),
            tflite_model.TFLiteModel(content=content, runtime=runtime).predict(inputs))
    report, plain = tflite_report.analyze(with_metadata), tflite_report.analyze(content)
    assert {key: value for key, value in report.items() if "bytes" not in key and key != "metadata"} \
        == {key: value for key, value in plain.items() if "bytes" not in key}
    assert report["arena_bytes"] == plain["arena_bytes"]
    assert "kws_settings: 4 labels (_silence_, _unknown_, yes, no)" in \
        tflite_report.format_report(report)


def names(content: bytes) -> list:
    """The names of a model's metadata entries."""
    model = model_metadata.schema.Model.GetRootAs(content, 0)
    return [model.Metadata(i).Name() for i in range(model.MetadataLength())]


@pytest.mark.skipif(not ARM_DS_CNN_S.exists(), reason=f"needs Arm's {ARM_DS_CNN_S} (../shared)")
def test_16_byte_aligned_weights_of_arm_files_stay_aligned():
    content = ARM_DS_CNN_S.read_bytes()
    assert all(position % 16 == 0 for position in data_positions(content))
    with_metadata = model_metadata.add_metadata(content, payload())
    assert all(position % 16 == 0 for position in data_positions(with_metadata))


def test_writing_again_replaces_the_entry_and_keeps_the_others(dnn_files):
    content = open(dnn_files["quantized"], "rb").read()
    once = model_metadata.add_metadata(content, payload())
    twice = model_metadata.add_metadata(once, payload(threshold=0.85))
    assert names(twice) == names(once) and names(once)[-1] == b"kws_settings"
    assert len(names(content)) == len(names(once)) - 1  # the converter's own entries stay
    assert model_metadata.read_metadata(twice)["threshold"] == 0.85
    assert "threshold 0.85" in model_metadata.summary(model_metadata.read_metadata(twice))


def test_what_each_kind_of_model_takes_per_call():
    stream = types.SimpleNamespace(frames_per_call=2, samples_per_call=640)
    kinds = [(None, None, {"kind": "fingerprint", "streaming": False, "frames_per_call": 49,
                           "features_per_frame": 10}),
             ("int16", None, {"kind": "audio", "streaming": False, "samples_per_call": 16000,
                              "dtype": "int16"}),
             (None, stream, {"kind": "fingerprint", "streaming": True, "frames_per_call": 2,
                             "features_per_frame": 10}),
             ("float32", stream, {"kind": "audio", "streaming": True, "samples_per_call": 640,
                                  "dtype": "float32"})]
    for audio, streaming, expected in kinds:
        described = model_metadata.describe(SETTINGS, LABELS, audio, streaming)
        assert described["input"] == expected and "threshold" not in described
        assert "label_count" not in described["model_settings"]
    assert model_metadata.describe(SETTINGS, LABELS, threshold=0.9)["threshold"] == 0.9


def test_unknown_fields_are_ignored_and_missing_ones_take_their_defaults(monkeypatch):
    settings = dict(payload()["model_settings"], added_by_a_newer_writer="x")
    settings.pop("preprocess", None)
    values = model_metadata.file_values(payload(model_settings=settings))
    assert "added_by_a_newer_writer" not in values and values["window_size_ms"] == 40
    assert values["wanted_words"] == "yes,no"
    # A field ModelSettings gains later: the file's value, else the field's default.
    newer = dataclasses.make_dataclass("ModelSettings", [
        (field.name, field.type, field) for field in dataclasses.fields(features.ModelSettings)]
        + [("future_field", str, dataclasses.field(default="plain"))], frozen=True)
    monkeypatch.setattr(features, "ModelSettings", newer)
    assert model_metadata.file_values(payload())["future_field"] == "plain"
    settings["future_field"] = "fancy"
    assert model_metadata.file_values(payload(model_settings=settings))["future_field"] == "fancy"


def test_the_label_count_of_an_older_file_is_ignored():
    """Files written while ModelSettings held the label count may carry it: it sets nothing."""
    older = dict(payload()["model_settings"], label_count=len(LABELS))
    values = model_metadata.file_values(payload(model_settings=older))
    assert values == model_metadata.file_values(payload()) and "label_count" not in values


def test_not_a_model_and_damaged_metadata(tmp_path):
    assert model_metadata.read_metadata(b"not a flatbuffer") is None
    content = open(ROOT / "Pretrained_models" / "DS_CNN" / "DS_CNN_S" / "ds_cnn_s_quantized.tflite",
                   "rb").read()
    damaged = model_metadata.add_metadata(content, payload()).replace(b'"format": 1', b'"format": }')
    with pytest.raises(ValueError, match="kws_settings metadata is unreadable"):
        model_metadata.read_metadata(damaged)
    assert "metadata_error" in tflite_report.analyze(damaged)


def parse(argv):
    return test_tflite.build_parser().parse_args(argv)


def with_metadata(args):
    """The flags as the deployment scripts see them: the file's settings in place."""
    return cli.replace_flags(args, model_metadata.carried_flags_from_flags(args))


@pytest.fixture
def described(dnn_files, tmp_path):
    path = tmp_path / "described.tflite"
    path.write_bytes(model_metadata.add_metadata(open(dnn_files["quantized"], "rb").read(),
                                                 payload()))
    return str(path)


def test_the_file_replaces_the_flags_not_given_silently(described, capsys):
    args = with_metadata(parse(["--tflite_path", described]))
    assert (args.window_size_ms, args.window_stride_ms, args.dct_coefficient_count) == (40, 20, 10)
    assert args.wanted_words == "yes,no" and capsys.readouterr().err == ""


def test_a_flag_given_that_disagrees_is_one_warning_and_the_file_wins(described, capsys):
    argv = ["--tflite_path", described, "--window_size_ms", "30", "--wanted_words", "Yes,no",
            "--dct_coefficient_count", "10"]
    args = with_metadata(parse(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ")
    assert "--window_size_ms 30.0 (the file: 40)" in err and "wanted_words" not in err
    assert "dct_coefficient_count" not in err and args.window_size_ms == 40
    forced = with_metadata(parse(argv + ["--force_flags"]))
    assert forced.window_size_ms == 30 and forced.window_stride_ms == 20
    assert "--force_flags: the flags are used" in capsys.readouterr().err


def test_a_labels_file_that_disagrees_is_replaced_by_the_file(described, tmp_path, capsys):
    import label_wav
    labels = tmp_path / "labels.txt"
    labels.write_text("_silence_\n_unknown_\nno\nyes\n")
    args = with_metadata(label_wav.build_parser().parse_args(
        ["--tflite_path", described, "--labels", str(labels), "x.wav"]))
    assert args.labels is None and args.wanted_words == "yes,no"
    assert f"--labels {labels} (the file: yes,no)" in capsys.readouterr().err
    wake_word = tmp_path / "wake_word.tflite"  # a wake-word model's threshold replaces the flag's
    wake_word.write_bytes(model_metadata.add_metadata(open(described, "rb").read(),
                                                      payload(threshold=0.93)))
    args = with_metadata(label_wav.build_parser().parse_args(
        ["--tflite_path", str(wake_word), "x.wav"]))
    assert args.detection_threshold == 0.93 and capsys.readouterr().err == ""


def test_a_file_without_metadata_leaves_the_flags_as_they_are(dnn_files):
    args = parse(["--tflite_path", dnn_files["quantized"], "--window_size_ms", "30"])
    assert with_metadata(args) is args


def test_deployment_tools_need_no_flags_and_no_tensorflow_for_a_described_file(described, tmp_path):
    for word in ("yes", "no"):
        write_wav(tmp_path / "test" / word / f"{word}.wav",
                  np.random.default_rng(1).integers(-3000, 3000, 16000))
    script = ("import sys, json\n"
              "import test_tflite\n"
              "test_tflite.main(test_tflite.build_parser().parse_args(json.loads(sys.argv[1])))\n"
              "print('tensorflow' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", script, json.dumps(
        ["--tflite_path", described, "--test_dir", str(tmp_path / "test"), "--data_url", ""])],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "accuracy" in run.stdout and run.stdout.strip().endswith("False")
    assert "input float32[1, 490]" in run.stdout  # 49 x 10: the file's settings, not the defaults

