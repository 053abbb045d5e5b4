"""The fingerprint: the geometry of a clip's features and the MFCC that computes them.

The fingerprint of a clip is the MFCC that TensorFlow's `audio_spectrogram`
(magnitude squared) and `mfcc` ops compute, flattened time-major; Arm's
published "Hello Edge" models were trained on exactly these features. Here
they are computed in batches with tf.signal and two constant matrices that
reproduce the ops' mel filterbank and DCT (tests/test_input_data.py compares
the two), several times faster than the per-clip ops.

ModelSettings is the geometry that a model is built for (labels, samples,
frames, coefficients): the data, the models and the deployment tools share it.
"""
import argparse
import dataclasses
import math

import numpy as np

import cli
from cli import UsageError

tf = cli.import_tensorflow()

# Constants of TensorFlow's mfcc op (tensorflow/core/kernels/mfcc.cc).
MFCC_LOWER_FREQUENCY_LIMIT = 20.0
MFCC_UPPER_FREQUENCY_LIMIT = 4000.0
MFCC_FILTERBANK_CHANNEL_COUNT = 40
MFCC_FILTERBANK_FLOOR = 1e-12


def add_feature_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the audio clip and its fingerprint."""
    group = parser.add_argument_group("fingerprint")
    group.add_argument("--sample_rate", type=cli.positive_int, default=16000,
                       help="Expected sample rate of the wavs.")
    group.add_argument("--clip_duration_ms", type=cli.positive_int, default=1000,
                       help="Expected duration in milliseconds of the wavs.")
    group.add_argument("--window_size_ms", type=float, default=30.0,
                       help="How long each spectrogram timeslice is.")
    group.add_argument("--window_stride_ms", type=float, default=10.0,
                       help="How far to move in time between spectrogram timeslices.")
    group.add_argument("--dct_coefficient_count", type=cli.positive_int, default=40,
                       help="How many bins to use for the MFCC fingerprint.")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Audio and fingerprint geometry that a model is built for."""

    label_count: int
    sample_rate: int
    clip_duration_ms: int
    window_size_ms: float
    window_stride_ms: float
    dct_coefficient_count: int

    @property
    def desired_samples(self) -> int:
        return int(self.sample_rate * self.clip_duration_ms / 1000)

    @property
    def window_size_samples(self) -> int:
        return int(self.sample_rate * self.window_size_ms / 1000)

    @property
    def window_stride_samples(self) -> int:
        return int(self.sample_rate * self.window_stride_ms / 1000)

    @property
    def spectrogram_length(self) -> int:
        length_minus_window = self.desired_samples - self.window_size_samples
        if length_minus_window < 0:
            return 0
        return 1 + length_minus_window // self.window_stride_samples

    @property
    def fft_length(self) -> int:
        return 2 ** math.ceil(math.log2(self.window_size_samples))

    @property
    def fingerprint_size(self) -> int:
        return self.spectrogram_length * self.dct_coefficient_count


def prepare_model_settings(label_count: int, sample_rate: int, clip_duration_ms: int,
                           window_size_ms: float, window_stride_ms: float,
                           dct_coefficient_count: int) -> ModelSettings:
    """Checks and bundles the settings that fix a model's input and output."""
    settings = ModelSettings(label_count, sample_rate, clip_duration_ms, window_size_ms,
                             window_stride_ms, dct_coefficient_count)
    if settings.window_size_samples <= 0 or settings.window_stride_samples <= 0:
        raise UsageError("--window_size_ms and --window_stride_ms must each cover at least "
                         "one sample at --sample_rate")
    if settings.spectrogram_length <= 0:
        raise UsageError(f"--window_size_ms {window_size_ms} is longer than "
                         f"--clip_duration_ms {clip_duration_ms}")
    if dct_coefficient_count <= 0:
        raise UsageError("--dct_coefficient_count must be positive")
    return settings


def settings_from_flags(args: argparse.Namespace, label_count: int) -> ModelSettings:
    """ModelSettings from the fingerprint flags, for a model of label_count labels."""
    return prepare_model_settings(label_count, args.sample_rate, args.clip_duration_ms,
                                  args.window_size_ms, args.window_stride_ms,
                                  args.dct_coefficient_count)


def mel_weight_matrix(model_settings: ModelSettings) -> np.ndarray:
    """The mel filterbank of TensorFlow's mfcc op as a [spectrogram bins, channels] matrix.

    It applies to the square root of the power spectrogram, as the op does
    (MfccMelFilterbank in tensorflow/core/kernels/mfcc_mel_filterbank.cc).
    """
    input_length = model_settings.fft_length // 2 + 1
    channels = MFCC_FILTERBANK_CHANNEL_COUNT

    def freq_to_mel(freq):
        return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)

    mel_low = freq_to_mel(MFCC_LOWER_FREQUENCY_LIMIT)
    mel_spacing = (freq_to_mel(MFCC_UPPER_FREQUENCY_LIMIT) - mel_low) / (channels + 1)
    center_frequencies = mel_low + mel_spacing * (np.arange(channels + 1) + 1)
    hz_per_sbin = 0.5 * model_settings.sample_rate / (input_length - 1)
    start_index = int(1.5 + MFCC_LOWER_FREQUENCY_LIMIT / hz_per_sbin)
    end_index = int(MFCC_UPPER_FREQUENCY_LIMIT / hz_per_sbin)
    weights = np.zeros((input_length, channels), dtype=np.float64)
    channel = 0
    for i in range(start_index, min(end_index, input_length - 1) + 1):
        melf = freq_to_mel(i * hz_per_sbin)
        while channel < channels and center_frequencies[channel] < melf:
            channel += 1
        band = channel - 1
        if band >= 0:
            weight = ((center_frequencies[band + 1] - melf) /
                      (center_frequencies[band + 1] - center_frequencies[band]))
            weights[i, band] += weight
        else:
            weight = (center_frequencies[0] - melf) / (center_frequencies[0] - mel_low)
        if band + 1 < channels:
            weights[i, band + 1] += 1.0 - weight
    return weights.astype(np.float32)


def dct_matrix(dct_coefficient_count: int) -> np.ndarray:
    """The DCT of TensorFlow's mfcc op as a [channels, coefficients] matrix (MfccDct)."""
    channels = MFCC_FILTERBANK_CHANNEL_COUNT
    if dct_coefficient_count > channels:
        raise UsageError(f"--dct_coefficient_count {dct_coefficient_count} is more than the "
                         f"{channels} mel channels of the mfcc op")
    j = np.arange(channels)[:, None]
    i = np.arange(dct_coefficient_count)[None, :]
    return (np.sqrt(2.0 / channels) * np.cos(np.pi / channels * (j + 0.5) * i)).astype(np.float32)


class Fingerprinter:
    """Turns batches of clips into MFCC fingerprints equal to TF's audio_spectrogram + mfcc."""

    def __init__(self, model_settings: ModelSettings):
        self.model_settings = model_settings
        self._window = tf.signal.hann_window(model_settings.window_size_samples, periodic=True)
        mel = mel_weight_matrix(model_settings)
        # The filterbank stops at 4 kHz: the spectrum above it is never read.
        self._bins = int(np.flatnonzero(mel.any(axis=1)).max()) + 1
        self._mel = tf.constant(mel[:self._bins])
        self._dct = tf.constant(dct_matrix(model_settings.dct_coefficient_count))
        # One traced function for all numpy() calls (a new one per call retraced every time).
        self._compute = tf.function(lambda audio: self(tf.cast(audio, tf.float32) / 32768.0),
                                    reduce_retracing=True)

    def __call__(self, audio: tf.Tensor) -> tf.Tensor:
        """audio: float32 [batch, desired_samples] in [-1, 1] -> [batch, fingerprint_size]."""
        settings = self.model_settings
        frames = tf.signal.frame(audio, settings.window_size_samples, settings.window_stride_samples)
        spectrum = tf.signal.rfft(frames * self._window, [settings.fft_length])[..., :self._bins]
        mel = tf.linalg.matmul(tf.math.abs(spectrum), self._mel)
        log_mel = tf.math.log(tf.math.maximum(mel, MFCC_FILTERBANK_FLOOR))
        mfcc = tf.linalg.matmul(log_mel, self._dct)
        return tf.reshape(mfcc, [-1, settings.fingerprint_size])

    def numpy(self, clips: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Fingerprints of int16 clips [n, desired_samples], computed in batches."""
        out = np.zeros((len(clips), self.model_settings.fingerprint_size), dtype=np.float32)
        for start in range(0, len(clips), batch_size):
            out[start:start + batch_size] = self._compute(clips[start:start + batch_size]).numpy()
        return out


def reference_fingerprint(audio: np.ndarray, model_settings: ModelSettings) -> np.ndarray:
    """One clip's fingerprint through TF's audio_spectrogram and mfcc ops themselves."""
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=tf.reshape(tf.constant(audio, tf.float32), [-1, 1]),
        window_size=model_settings.window_size_samples,
        stride=model_settings.window_stride_samples, magnitude_squared=True)
    mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=model_settings.sample_rate,
                           dct_coefficient_count=model_settings.dct_coefficient_count)
    return mfcc.numpy().reshape(-1)
