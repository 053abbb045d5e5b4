"""The fingerprint: the geometry of a clip's features and the MFCC that computes them.

The fingerprint of a clip is the MFCC that TensorFlow's `audio_spectrogram`
(magnitude squared) and `mfcc` ops compute, flattened time-major; Arm's
published "Hello Edge" models were trained on exactly these features.
Fingerprinter computes them for numpy clips, in batches, in numpy alone (the
deployment tools need no TensorFlow); graph_fingerprints is the same MFCC as a
TensorFlow graph, for the tf.data training pipeline. Both use two constant
matrices that reproduce the ops' mel filterbank and DCT, and
tests/test_input_data.py compares both with the ops (reference_fingerprint).

ModelSettings is the geometry that a model is built for (labels, samples,
frames, coefficients): the data, the models and the deployment tools share it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

import cli
from cli import UsageError

tf = cli.lazy_tensorflow()

# Constants of TensorFlow's mfcc op (tensorflow/core/kernels/mfcc.cc).
MFCC_LOWER_FREQUENCY_LIMIT = 20.0
MFCC_UPPER_FREQUENCY_LIMIT = 4000.0
MFCC_FILTERBANK_CHANNEL_COUNT = 40
MFCC_FILTERBANK_FLOOR = 1e-12
PCM_SCALE = 32768.0  # int16 PCM sample -> float in [-1, 1]
FINGERPRINT_BATCH = 16  # clips per numpy batch: the spectra of a batch stay in the CPU's cache


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
    """The mel filterbank of TensorFlow's mfcc op as a float64 [spectrogram bins, channels] matrix.

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
    return weights


def dct_matrix(dct_coefficient_count: int) -> np.ndarray:
    """The DCT of TensorFlow's mfcc op as a float64 [channels, coefficients] matrix (MfccDct)."""
    channels = MFCC_FILTERBANK_CHANNEL_COUNT
    if dct_coefficient_count > channels:
        raise UsageError(f"--dct_coefficient_count {dct_coefficient_count} is more than the "
                         f"{channels} mel channels of the mfcc op")
    j = np.arange(channels)[:, None]
    i = np.arange(dct_coefficient_count)[None, :]
    return np.sqrt(2.0 / channels) * np.cos(np.pi / channels * (j + 0.5) * i)


def spectrum_bins(model_settings: ModelSettings) -> int:
    """How many bins of the spectrum the mel filterbank reads: it stops at 4 kHz."""
    return int(np.flatnonzero(mel_weight_matrix(model_settings).any(axis=1)).max()) + 1


class Fingerprinter:
    """Clips [n, desired_samples] -> MFCC fingerprints [n, fingerprint_size], in numpy.

    The arithmetic of TF's audio_spectrogram and mfcc ops: float64 throughout, the
    power spectrum rounded to float32 between the two ops as TensorFlow hands it over.
    """

    def __init__(self, model_settings: ModelSettings):
        self.model_settings = model_settings
        size = model_settings.window_size_samples
        self._window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)  # periodic Hann
        self._bins = spectrum_bins(model_settings)
        self._mel = mel_weight_matrix(model_settings)[:self._bins]
        self._dct = dct_matrix(model_settings.dct_coefficient_count)

    def __call__(self, clips: np.ndarray, batch_size: int = FINGERPRINT_BATCH) -> np.ndarray:
        """Fingerprints (float32) of int16 clips, or of float clips in [-1, 1]."""
        settings = self.model_settings
        out = np.zeros((len(clips), settings.fingerprint_size), dtype=np.float32)
        # The zero-padded frames of a batch: the FFT runs on contiguous rows.
        frames = np.zeros((min(batch_size, len(clips)), settings.spectrogram_length,
                           settings.fft_length))
        for start in range(0, len(clips), batch_size):
            batch = clips[start:start + batch_size]
            out[start:start + len(batch)] = self._batch(batch, frames[:len(batch)])
        return out

    def _batch(self, clips: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """float64 fingerprints of a batch; frames: its buffer [clips, frames, fft_length]."""
        settings = self.model_settings
        size = settings.window_size_samples
        window = self._window / PCM_SCALE if clips.dtype.kind in "iu" else self._window
        np.multiply(np.lib.stride_tricks.sliding_window_view(clips, size, axis=1)
                    [:, ::settings.window_stride_samples], window, out=frames[..., :size])
        spectrum = np.fft.rfft(frames)[..., :self._bins]
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)  # the op's output
        mel = np.sqrt(power.reshape(-1, self._bins), dtype=np.float64) @ self._mel
        mfcc = np.log(np.maximum(mel, MFCC_FILTERBANK_FLOOR)) @ self._dct
        return mfcc.reshape(len(clips), -1)


def clips_as(clips: np.ndarray, dtype: "np.typing.DTypeLike") -> np.ndarray:
    """Clips (int16, or float in [-1, 1]) as int16 PCM or as float32 in [-1, 1], the scale
    Fingerprinter reads them at: the input of a raw-audio model (convert.py --include_features)."""
    clips = np.asarray(clips)
    dtype = np.dtype(dtype)
    integer = clips.dtype.kind in "iu"
    if dtype.kind == "f":
        return (clips / PCM_SCALE if integer else clips).astype(dtype)
    if integer:
        return clips.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(clips * PCM_SCALE), info.min, info.max).astype(dtype)


def graph_mfcc(audio: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """Fingerprinter's MFCC as a TensorFlow graph (float32, tf.signal), frame by frame:
    audio float32 [batch, samples] in [-1, 1], of any length of at least one window ->
    [batch, frames, dct_coefficient_count], one frame per window_stride_samples."""
    settings = model_settings
    bins = spectrum_bins(settings)
    window = tf.signal.hann_window(settings.window_size_samples, periodic=True)
    frames = tf.signal.frame(audio, settings.window_size_samples, settings.window_stride_samples)
    # The magnitude before the slice: TFLite slices no complex tensors.
    magnitude = tf.math.abs(tf.signal.rfft(frames * window, [settings.fft_length]))[..., :bins]
    mel_matrix = tf.constant(mel_weight_matrix(settings)[:bins], tf.float32)
    mel = tf.linalg.matmul(magnitude, mel_matrix)
    # The floor after the log (the same values): a float16 .tflite rounds the constant 1e-12 to 0.
    log_mel = tf.math.maximum(tf.math.log(mel), math.log(MFCC_FILTERBANK_FLOOR))
    return tf.linalg.matmul(log_mel, tf.constant(dct_matrix(settings.dct_coefficient_count),
                                                 tf.float32))


def graph_fingerprints(audio: tf.Tensor, model_settings: ModelSettings) -> tf.Tensor:
    """graph_mfcc of whole clips, flattened, for the tf.data training pipeline:
    audio float32 [batch, desired_samples] in [-1, 1] -> [batch, fingerprint_size]."""
    return tf.reshape(graph_mfcc(audio, model_settings), [-1, model_settings.fingerprint_size])


def reference_fingerprint(audio: np.ndarray, model_settings: ModelSettings) -> np.ndarray:
    """One clip's fingerprint through TF's audio_spectrogram and mfcc ops themselves."""
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=tf.reshape(tf.constant(audio, tf.float32), [-1, 1]),
        window_size=model_settings.window_size_samples,
        stride=model_settings.window_stride_samples, magnitude_squared=True)
    mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=model_settings.sample_rate,
                           dct_coefficient_count=model_settings.dct_coefficient_count)
    return mfcc.numpy().reshape(-1)
