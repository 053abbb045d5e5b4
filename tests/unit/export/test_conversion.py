"""kws.export.conversion: the one dispatch of the three forms, each checked on what it takes."""
import numpy as np
import pytest

from kws import features
from kws.export import conversion, quantization, stateful_model
from kws.models import registry
from kws.runtime.tflite_model import TFLiteModel

from conftest import TINY_SIZE_INFO

SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)
LABELS = 4
FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]
INT8 = quantization.MODES[(quantization.FULL_INTEGER, "int8")]


@pytest.fixture(scope="module")
def model():
    return registry.create_model(SETTINGS, "ds_cnn", TINY_SIZE_INFO["ds_cnn"], label_count=LABELS)


@pytest.fixture(scope="module")
def clips():
    return np.random.default_rng(0).integers(-3000, 3000, (6, SETTINGS.desired_samples), np.int16)


def test_the_plain_form_takes_fingerprints_and_checks_on_calibration_fingerprints(model, clips):
    content, inputs = conversion.convert(model, SETTINGS, INT8, clips, 100.0)
    tflite = TFLiteModel(content=content)
    assert not tflite.takes_audio and tflite.input_type == "int8"
    assert np.allclose(inputs, features.Fingerprinter(SETTINGS)(clips))
    content, inputs = conversion.convert(model, SETTINGS, FLOAT32, None, 100.0)
    assert inputs.shape == (2, SETTINGS.fingerprint_size) and not inputs.any()


def test_the_raw_audio_form_takes_clips(model, clips):
    content, inputs = conversion.convert(model, SETTINGS, FLOAT32, None, 100.0,
                                         include_features="int16")
    tflite = TFLiteModel(content=content)
    assert tflite.takes_audio and inputs.shape[-1] == SETTINGS.desired_samples


def test_the_streaming_form_takes_a_stride_and_keeps_states():
    model = registry.create_model(SETTINGS, "gru", TINY_SIZE_INFO["gru"], label_count=LABELS)
    stream = stateful_model.streaming_model(model, SETTINGS, "gru")
    content, _ = conversion.convert(model, SETTINGS, FLOAT32, None, 100.0, stream=stream)
    tflite = TFLiteModel(content=content)
    assert tflite.stream is not None and not tflite.takes_audio
    assert tflite.input_size == SETTINGS.fingerprint_size
