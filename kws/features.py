"""The fingerprint: the geometry of a clip's features and the front end that computes them.

The fingerprint of a clip is, flattened time-major, one of (--preprocess):
- mfcc (the default): the MFCC that TensorFlow's `audio_spectrogram` (magnitude
  squared) and `mfcc` ops compute; Arm's published "Hello Edge" models were
  trained on exactly these features;
- log_mel: the same mel construction with --dct_coefficient_count bands up to
  8 kHz (the Nyquist frequency at 16 kHz), applied to the magnitude, and the
  log with the same floor, without the DCT (BC-ResNet's features).
Fingerprinter computes them for numpy clips, in batches, in numpy alone (the
deployment tools need no TensorFlow); kws.graph_features computes the same
features as a TensorFlow graph, for the tf.data training pipeline and for the
raw-audio models. Both use the constant matrices of feature_matrices
(a mel filterbank reproducing the op's, and the op's DCT for mfcc):
tests/unit/data/test_speech_commands.py compares the MFCC forms with the ops
(graph_features.reference_fingerprint), tests/unit/test_log_mel.py the log-mel forms with each other.

ModelSettings is the geometry of the clip and its fingerprint that a model is
built for (samples, frames, features per frame, their type): the data, the
models and the deployment tools share it. The number of labels is not part of
it: the model builders take it on its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
from typing import Optional, Tuple

import numpy as np

from kws import cli
from kws.cli import UsageError

# Constants of TensorFlow's mfcc op (tensorflow/core/kernels/mfcc.cc).
MFCC_LOWER_FREQUENCY_LIMIT = 20.0
MFCC_UPPER_FREQUENCY_LIMIT = 4000.0
MFCC_FILTERBANK_CHANNEL_COUNT = 40
MFCC_FILTERBANK_FLOOR = 1e-12
LOG_MEL_UPPER_FREQUENCY_LIMIT = 8000.0  # or the Nyquist frequency, when lower
MFCC = "mfcc"
LOG_MEL = "log_mel"
PREPROCESS_TYPES = (MFCC, LOG_MEL)
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
    group.add_argument("--preprocess", choices=PREPROCESS_TYPES, default=MFCC,
                       help="The features of each frame: mfcc (TensorFlow's mfcc op: 40 mel "
                            "channels up to 4 kHz, log, DCT) or log_mel (--dct_coefficient_count "
                            "mel bands up to 8 kHz, log, no DCT).")
    group.add_argument("--dct_coefficient_count", "--feature_bin_count",
                       dest="dct_coefficient_count", type=cli.positive_int, default=40,
                       help="How many features per frame: MFCC coefficients, or mel bands with "
                            "--preprocess log_mel.")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Audio and fingerprint geometry that a model is built for."""

    sample_rate: int
    clip_duration_ms: int
    window_size_ms: float
    window_stride_ms: float
    dct_coefficient_count: int  # features per frame: MFCC coefficients, or log-mel bands
    preprocess: str = MFCC  # one of PREPROCESS_TYPES

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


def prepare_model_settings(sample_rate: int, clip_duration_ms: int, window_size_ms: float,
                           window_stride_ms: float, dct_coefficient_count: int,
                           preprocess: str = MFCC) -> ModelSettings:
    """Checks and bundles the settings that fix a model's input."""
    if preprocess not in PREPROCESS_TYPES:
        raise UsageError(f"--preprocess {preprocess}: expected one of {', '.join(PREPROCESS_TYPES)}")
    settings = ModelSettings(sample_rate, clip_duration_ms, window_size_ms, window_stride_ms,
                             dct_coefficient_count, preprocess)
    if settings.window_size_samples <= 0 or settings.window_stride_samples <= 0:
        raise UsageError("--window_size_ms and --window_stride_ms must each cover at least "
                         "one sample at --sample_rate")
    if settings.spectrogram_length <= 0:
        raise UsageError(f"--window_size_ms {window_size_ms} is longer than "
                         f"--clip_duration_ms {clip_duration_ms}")
    if dct_coefficient_count <= 0:
        raise UsageError("--dct_coefficient_count must be positive")
    return settings


def settings_from_flags(args: argparse.Namespace) -> ModelSettings:
    """ModelSettings from the fingerprint flags."""
    return prepare_model_settings(args.sample_rate, args.clip_duration_ms, args.window_size_ms,
                                  args.window_stride_ms, args.dct_coefficient_count,
                                  args.preprocess)


def mel_weight_matrix(model_settings: ModelSettings,
                      channels: int = MFCC_FILTERBANK_CHANNEL_COUNT,
                      upper_frequency: float = MFCC_UPPER_FREQUENCY_LIMIT) -> np.ndarray:
    """The mel filterbank of TensorFlow's mfcc op as a float64 [spectrogram bins, channels] matrix,
    by default with the op's 40 channels from 20 Hz to 4 kHz.

    It applies to the square root of the power spectrogram, as the op does
    (MfccMelFilterbank in tensorflow/core/kernels/mfcc_mel_filterbank.cc).
    """
    input_length = model_settings.fft_length // 2 + 1

    def freq_to_mel(freq):
        return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)

    mel_low = freq_to_mel(MFCC_LOWER_FREQUENCY_LIMIT)
    mel_spacing = (freq_to_mel(upper_frequency) - mel_low) / (channels + 1)
    center_frequencies = mel_low + mel_spacing * (np.arange(channels + 1) + 1)
    hz_per_sbin = 0.5 * model_settings.sample_rate / (input_length - 1)
    start_index = int(1.5 + MFCC_LOWER_FREQUENCY_LIMIT / hz_per_sbin)
    end_index = int(upper_frequency / hz_per_sbin)
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


@functools.lru_cache(maxsize=32)
def feature_matrices(model_settings: ModelSettings) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The constant matrices of the settings' features, float64 and read-only: the mel
    filterbank [spectrum_bins, channels] (rows up to its last non-zero one) and the DCT
    [channels, coefficients], None for log_mel."""
    settings = model_settings
    if settings.preprocess == LOG_MEL:
        upper = min(LOG_MEL_UPPER_FREQUENCY_LIMIT, settings.sample_rate / 2)
        mel = mel_weight_matrix(settings, settings.dct_coefficient_count, upper)
        dct = None
    else:
        mel = mel_weight_matrix(settings)
        dct = dct_matrix(settings.dct_coefficient_count)
        dct.setflags(write=False)
    mel = mel[:int(np.flatnonzero(mel.any(axis=1)).max()) + 1]
    mel.setflags(write=False)
    return mel, dct


def spectrum_bins(model_settings: ModelSettings) -> int:
    """How many bins of the magnitude spectrum the mel filterbank reads: it stops at 4 kHz
    (mfcc) or at 8 kHz (log_mel)."""
    return len(feature_matrices(model_settings)[0])


def _log_mel_features(magnitude: np.ndarray, mel: np.ndarray,
                      dct: Optional[np.ndarray]) -> np.ndarray:
    """magnitude [..., bins] -> the log of its mel bands, floored, then the DCT unless None."""
    log_mel = np.log(np.maximum(magnitude @ mel, MFCC_FILTERBANK_FLOOR))
    return log_mel if dct is None else log_mel @ dct


def features_from_magnitude(magnitude: np.ndarray, model_settings: ModelSettings) -> np.ndarray:
    """Per-frame features of magnitude spectra [..., frames, spectrum_bins(model_settings)]
    (the square root of the power spectrum, up to the filterbank's last bin) ->
    [..., frames, dct_coefficient_count]: mel, log with the floor, and the DCT for mfcc, with
    Fingerprinter's matrices. Computed in the magnitude's float type (float32 stays float32)."""
    magnitude = np.asarray(magnitude)
    mel, dct = feature_matrices(model_settings)
    if magnitude.shape[-1] != len(mel):
        raise ValueError(f"features_from_magnitude: expected {len(mel)} spectrum bins, "
                         f"got magnitude of shape {magnitude.shape}")
    dtype = np.result_type(magnitude.dtype, np.float32)
    return _log_mel_features(magnitude.astype(dtype, copy=False), mel.astype(dtype),
                             None if dct is None else dct.astype(dtype))


def hann_window(size: int) -> np.ndarray:
    """The periodic Hann window of size samples, float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)


class Fingerprinter:
    """Clips [n, desired_samples] -> fingerprints [n, fingerprint_size] (MFCC or log-mel), in numpy.

    The arithmetic of TF's audio_spectrogram and mfcc ops: float64 throughout, the
    power spectrum rounded to float32 between the two ops as TensorFlow hands it over.
    """

    def __init__(self, model_settings: ModelSettings):
        self.model_settings = model_settings
        size = model_settings.window_size_samples
        self._window = hann_window(size)
        self._mel, self._dct = feature_matrices(model_settings)
        self._bins = len(self._mel)

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
        magnitude = np.sqrt(power.reshape(-1, self._bins), dtype=np.float64)
        return _log_mel_features(magnitude, self._mel, self._dct).reshape(len(clips), -1)


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
