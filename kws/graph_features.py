"""The fingerprint as a TensorFlow graph (tf.signal): the front end of the tf.data training
pipeline and of the raw-audio models, the same features as kws.features.Fingerprinter computes
in numpy, from the same constant matrices (features.feature_matrices).
"""
from __future__ import annotations

import math

import numpy as np

from kws import tf_env
from kws.cli import UsageError
from kws.features import MFCC, MFCC_FILTERBANK_FLOOR, ModelSettings, feature_matrices, hann_window

tf = tf_env.lazy_tensorflow()


def graph_features(audio: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """Fingerprinter's features (MFCC or log-mel) as a TensorFlow graph (float32, tf.signal),
    frame by frame: audio float32 [batch, samples] in [-1, 1], of any length of at least one
    window -> [batch, frames, dct_coefficient_count], one frame per window_stride_samples."""
    settings = model_settings
    mel, dct = feature_matrices(settings)
    # Computed in float64: tf.signal.hann_window's float32 loses 1e-4 of the edge samples' weights.
    window = tf.constant(hann_window(settings.window_size_samples), tf.float32)
    frames = tf.signal.frame(audio, settings.window_size_samples, settings.window_stride_samples)
    # The magnitude before the slice: TFLite slices no complex tensors.
    spectrum = tf.signal.rfft(frames * window, [settings.fft_length])
    magnitude = tf.math.abs(spectrum)[..., :len(mel)]
    mel_bands = tf.linalg.matmul(magnitude, tf.constant(mel, tf.float32))
    # The floor after the log (the same values): a float16 .tflite rounds the constant 1e-12 to 0.
    log_mel = tf.math.maximum(tf.math.log(mel_bands), math.log(MFCC_FILTERBANK_FLOOR))
    if dct is None:
        return log_mel
    return tf.linalg.matmul(log_mel, tf.constant(dct, tf.float32))


def graph_fingerprints(audio: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """graph_features of whole clips, flattened, for the tf.data training pipeline:
    audio float32 [batch, desired_samples] in [-1, 1] -> [batch, fingerprint_size]."""
    return tf.reshape(graph_features(audio, model_settings), [-1, model_settings.fingerprint_size])


def reference_fingerprint(audio: np.ndarray, model_settings: ModelSettings) -> np.ndarray:
    """One clip's MFCC fingerprint through TF's audio_spectrogram and mfcc ops themselves."""
    if model_settings.preprocess != MFCC:
        raise UsageError(f"--preprocess {model_settings.preprocess}: TensorFlow has no op for it; "
                         f"reference_fingerprint computes --preprocess {MFCC} only")
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=tf.reshape(tf.constant(audio, tf.float32), [-1, 1]),
        window_size=model_settings.window_size_samples,
        stride=model_settings.window_stride_samples, magnitude_squared=True)
    mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=model_settings.sample_rate,
                           dct_coefficient_count=model_settings.dct_coefficient_count)
    return mfcc.numpy().reshape(-1)
