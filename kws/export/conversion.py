"""A built keyword model to .tflite bytes, in the form asked: plain, raw-audio or streaming.

convert.py's conversion, for every caller that holds a Keras model and its
calibration clips (convert.py, train_wake_word.py): the streaming form
(kws/export/stateful_model.py), the form with the front end inside (kws/export/raw_audio.py), or the
fingerprint model itself (kws/export/quantization.py).
"""
from typing import Optional, Tuple

import numpy as np

from kws import features
from kws.export import quantization, raw_audio, stateful_model
from kws.features import ModelSettings

tf = quantization.tf


def convert(model: tf.keras.Model, model_settings: ModelSettings, mode: quantization.Mode,
            clips: Optional[np.ndarray], input_clip_percentile: float,
            stream: Optional[stateful_model.StreamingModel] = None,
            include_features: Optional[str] = None) -> Tuple[bytes, np.ndarray]:
    """The .tflite bytes of model (or of its streaming form stream) in mode, and the inputs to
    check that it runs on: fingerprints, or clips of audio when it takes audio. clips: the
    calibration clips of the calibrated modes, None otherwise."""
    if stream is not None:
        return stateful_model.convert_streaming(stream, mode, clips, input_clip_percentile)
    if include_features:
        return raw_audio.convert_raw_audio(model, model_settings, mode, include_features, clips,
                                       input_clip_percentile)
    check_inputs = features.Fingerprinter(model_settings)(clips) if mode.calibrated else \
        np.zeros((2, model_settings.fingerprint_size), np.float32)
    return quantization.to_tflite(model, mode, check_inputs, input_clip_percentile), check_inputs
