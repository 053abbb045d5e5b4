"""TensorFlow Lite for Microcontrollers: every architecture's int8 model runs in TFLM's own
interpreter as in LiteRT, the arena it needs is measured, and what it cannot run is one line."""
import json

import numpy as np
import pytest

import label_wav
import test_tflite
from kws import cli, tf_env
from kws.cli import UsageError
from kws.export import quantization
from kws.models import registry
from kws.runtime import report as tflite_report
from kws.runtime import tflite_model
from kws.runtime import tflm as tflm_runtime

from conftest import (TINY_FEATURE_FLAGS, TINY_SIZE_INFO, make_speech_commands,
                      mfcc_like_fingerprints, tiny_settings)

tf = tf_env.import_tensorflow()

INT8 = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
INT8_IO = quantization.MODES[(quantization.FULL_INTEGER, "int8")]
FLOAT16 = quantization.MODES[(quantization.FLOAT16, "float32")]
LABELS = 4
SHAPE_ARITHMETIC = {"SHAPE", "STRIDED_SLICE", "FILL"}
SOFTMAX_STEP = 1 / 256  # the int8 softmax output's fixed scale


def tiny_int8(architecture, mode=INT8):
    tf.keras.utils.set_random_seed(0)
    settings = tiny_settings(architecture)
    model = registry.create_model(settings, architecture, TINY_SIZE_INFO.get(architecture),
                                  label_count=LABELS)
    return quantization.to_tflite(model, mode, mfcc_like_fingerprints(16, settings=settings))


def scores(content, runtime, inputs):
    return tflite_model.TFLiteModel(content=content, runtime=runtime).predict(inputs)


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
@pytest.mark.parametrize("architecture", sorted(registry.MODELS))
def test_int8_model_is_batch_one_and_runs_on_tflm_as_on_litert(architecture):
    """TFLM computes what LiteRT's reference kernels compute, up to rounding: exactly for the
    convolutional models here, while a FULLY_CONNECTED followed by another can be one step
    apart inside the model, which a stack of them grows (measured: 3 output steps for the tiny
    dnn, the most of any architecture). LiteRT's optimized kernels are further away."""
    content = tiny_int8(architecture)
    report = tflite_report.analyze(content)
    assert report["input"][0]["shape"][0] == 1
    assert not SHAPE_ARITHMETIC & set(report["ops"]), report["ops"]
    inputs = mfcc_like_fingerprints(6, seed=1, settings=tiny_settings(architecture))
    tflm = scores(content, tflite_model.TFLM, inputs)
    assert np.abs(tflm - scores(content, tflite_model.LITERT_REFERENCE, inputs)).max() <= \
        3 * SOFTMAX_STEP + 1e-6


def test_arena_is_measured_and_covers_the_activations():
    content = tiny_int8("ds_cnn", INT8_IO)
    arena = tflm_runtime.arena(content)
    assert arena["total"] == arena["head"] + arena["tail"]
    # The activations are planned as our liveness estimate plans them, up to TFLM's alignment.
    report = tflite_report.analyze(content)
    assert report["arena_bytes"] <= arena["head"] <= report["arena_bytes"] + 16 * report["op_count"]
    figures = tflm_runtime.report_figures(content, "m.tflite")
    assert figures == {"tflm_arena_bytes": arena["total"], "tflm_activation_bytes": arena["head"]}
    assert f"{arena['total']:,} bytes" in tflite_report.format_report({**report, **figures})


def test_a_model_tflm_cannot_run_is_one_line_naming_the_op():
    content = tiny_int8("dnn", FLOAT16)  # float16 weights: a DEQUANTIZE TFLM has no kernel for
    with pytest.raises(tflm_runtime.CannotRun, match="op DEQUANTIZE") as error:
        tflite_model.TFLiteModel("m.tflite", content=content, runtime=tflite_model.TFLM)
    assert "\n" not in str(error.value) and "--tflite_path m.tflite" in str(error.value)
    figures = tflm_runtime.report_figures(content, "m.tflite")
    assert set(figures) == {"tflm_error"} and "DEQUANTIZE" in figures["tflm_error"]
    assert "cannot run it: op DEQUANTIZE" in tflite_report.format_report(
        {**tflite_report.analyze(content), **figures})


def test_without_tflite_micro_the_flag_says_so(monkeypatch):
    monkeypatch.setattr(tflm_runtime, "available", lambda: False)
    with pytest.raises(UsageError, match="--runtime tflm needs the tflite-micro package"):
        tflite_model.TFLiteModel(content=tiny_int8("dnn"), runtime=tflite_model.TFLM)
    assert "not installed" in tflm_runtime.report_figures(b"", "m")["tflm_error"]


def test_test_tflite_on_tflm_gives_litert_figures(tmp_path):
    data_dir = make_speech_commands(tmp_path / "data", ["yes", "no"], ["cat"])
    path = tmp_path / "dnn.tflite"
    cli.write_atomically(str(path), tiny_int8("dnn"))
    figures = {}
    for runtime in (tflite_model.LITERT, tflite_model.TFLM):
        output = tmp_path / f"{runtime}.json"
        test_tflite.main(test_tflite.build_parser().parse_args(
            ["--tflite_path", str(path), "--data_url", "", "--data_dir", str(data_dir),
             "--wanted_words", "yes,no", "--runtime", runtime, "--output_json", str(output),
             "--audio_cache_dir", "", *TINY_FEATURE_FLAGS]))
        figures[runtime] = json.loads(output.read_text())
    assert figures[tflite_model.TFLM] == figures[tflite_model.LITERT]


def test_runtime_applies_to_a_tflite_not_a_checkpoint(tmp_path):
    args = label_wav.build_parser().parse_args(["--checkpoint", str(tmp_path / "ckpt"), "--runtime",
                                                "tflm", str(tmp_path / "a.wav")])
    with pytest.raises(UsageError, match="--runtime tflm runs a .tflite"):
        label_wav.main(args)
