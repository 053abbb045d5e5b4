"""Tests of features.ModelSettings: the geometry of a clip and its fingerprint, and nothing else."""
import dataclasses

from kws import features


def test_model_settings_hold_the_fingerprint_geometry_only():
    """The label count is the model builders' argument (tests/unit/models/test_registry.py)."""
    assert [field.name for field in dataclasses.fields(features.ModelSettings)] == [
        "sample_rate", "clip_duration_ms", "window_size_ms", "window_stride_ms",
        "dct_coefficient_count", "preprocess"]
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    assert not hasattr(settings, "label_count")
    assert (settings.spectrogram_length, settings.fingerprint_size) == (49, 490)
