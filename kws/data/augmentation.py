"""Training augmentation: each augmentation one small transform, applied from a list.

A transform takes a batch of float32 clips in [-1, 1] (with their labels)
and a random generator, and returns the batch changed. `transforms()` builds
the list that the flags turn on, in the order they apply: speech gain,
speed/pitch (resample), microphone colouring (eq), reverberation, time shift,
background noise. A transform that is off is not in the list and draws
nothing, so the default list (time shift, background noise) draws exactly
what TensorFlow's speech_commands example draws. SpecAugment masks act on the
fingerprints, after the MFCC: `SpecAugment.masks`.

A new augmentation is one class with a __call__, one flag, and one line in
`transforms()`.
"""
import argparse
import dataclasses
import math
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np

from kws import cli
from kws.cli import UsageError
from kws.features import ModelSettings

DEFAULT_TIME_SHIFT_MS = 100.0
DEFAULT_BACKGROUND_FREQUENCY = 0.8
DEFAULT_BACKGROUND_VOLUME = 0.1
AUGMENTATION_DOMAINS = ("auto", "spectrum", "audio")

def add_augmentation_flags(parser: argparse.ArgumentParser, fingerprint_masks: bool = True) -> None:
    """Flags of the training augmentation: the audio transforms (train.py, optimize.py, and
    convert.py, whose calibration clips are augmented as in training) and, with
    fingerprint_masks, SpecAugment (train.py and optimize.py)."""
    group = parser.add_argument_group("augmentation of training clips")
    group.add_argument("--time_shift_ms", type=cli.non_negative_float, default=DEFAULT_TIME_SHIFT_MS,
                       help="Range to randomly shift the training audio by in time.")
    group.add_argument("--background_frequency", type=cli.fraction,
                       default=DEFAULT_BACKGROUND_FREQUENCY,
                       help="How many of the training samples have background noise mixed in.")
    group.add_argument("--background_volume", type=cli.fraction, default=DEFAULT_BACKGROUND_VOLUME,
                       help="How loud the background noise should be, between 0 and 1.")
    group.add_argument("--background_snr_db", type=snr_range, default=None,
                       help="MIN,MAX: mix the background noise of a keyword/unknown sample at a "
                            "signal-to-noise ratio uniform in [MIN, MAX] dB (speech power measured "
                            "over the clip's active frames) instead of at --background_volume; "
                            "write --background_snr_db=-5,20 when MIN is negative.")
    group.add_argument("--resample", type=cli.fraction, default=0.0,
                       help="Speed and pitch perturbation: each clip is resampled by a random "
                            "factor in [1-r, 1+r] about its centre (kws_streaming's --resample).")
    group.add_argument("--reverb_probability", type=cli.fraction, default=0.0,
                       help="Share of training clips convolved with a generated room impulse "
                            "response (exponentially decaying noise, RT60 0.15-0.8 s).")
    group.add_argument("--eq_db", type=cli.non_negative_float, default=0.0,
                       help="Microphone and channel colouring: each clip filtered by a smooth "
                            "random gain curve over log frequency, at most e dB up or down.")
    group.add_argument("--gain_db", type=cli.non_negative_float, default=0.0,
                       help="Random gain of each clip's speech, uniform in [-g, g] dB.")
    if fingerprint_masks:
        masks = parser.add_argument_group("SpecAugment masks on training fingerprints")
        masks.add_argument("--time_masks", type=int, default=0,
                           help="SpecAugment: how many time masks on each training fingerprint.")
        masks.add_argument("--time_mask_max", type=int, default=0,
                           help="SpecAugment: widest time mask, in frames.")
        masks.add_argument("--frequency_masks", type=int, default=0,
                           help="SpecAugment: how many coefficient masks on each training fingerprint.")
        masks.add_argument("--frequency_mask_max", type=int, default=0,
                           help="SpecAugment: widest coefficient mask, in MFCC coefficients.")
        parser.add_argument("--augmentation_domain", choices=AUGMENTATION_DOMAINS, default="auto",
                            help="Where training batches are mixed: spectrum (each clip's and noise "
                                 "recording's short-time spectra computed once, then shifted in whole "
                                 "hops, scaled and summed per batch: no FFT per step), audio (every "
                                 "batch framed and transformed again), or auto (spectrum unless "
                                 "--resample, --reverb_probability, --eq_db or --background_snr_db "
                                 "is on, or the spectra would not fit in half the free memory).")


def snr_range(text: str) -> Tuple[float, float]:
    """argparse type: 'MIN,MAX' in dB, MIN <= MAX."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in dB such as 5,25, got {text!r}")
    if low > high:
        raise argparse.ArgumentTypeError(f"expected MIN <= MAX, got {text!r}")
    return low, high


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Augmentations beyond time shift and background noise; all off by default."""
    resample: float = 0.0  # speed/pitch factor in [1 - resample, 1 + resample]
    background_snr_db: Optional[Tuple[float, float]] = None  # None: --background_volume
    reverb_probability: float = 0.0
    gain_db: float = 0.0
    eq_db: float = 0.0
    time_masks: int = 0
    time_mask_max: int = 0  # frames
    frequency_masks: int = 0
    frequency_mask_max: int = 0  # coefficients
    augmentation_domain: str = "auto"  # where training batches are mixed (AUGMENTATION_DOMAINS)

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Augmentation":
        for name in ("time_masks", "time_mask_max", "frequency_masks", "frequency_mask_max"):
            if getattr(args, name, 0) < 0:
                raise UsageError(f"--{name} must be 0 or more, got {getattr(args, name)}")
        return cls(**{field.name: getattr(args, field.name, field.default)
                      for field in dataclasses.fields(cls)})

    def audio_only(self) -> List[str]:
        """The flags that are on and change the audio in ways that are not a sum of spectra."""
        flags = {"--resample": self.resample > 0, "--reverb_probability": self.reverb_probability > 0,
                 "--eq_db": self.eq_db > 0, "--background_snr_db": self.background_snr_db is not None}
        return [flag for flag, on in flags.items() if on]

    @property
    def masks(self) -> bool:
        return (self.time_masks > 0 and self.time_mask_max > 0) or \
            (self.frequency_masks > 0 and self.frequency_mask_max > 0)


REVERB_RT60_S = (0.15, 0.8)
REVERB_DIRECT_TO_REVERBERANT_DB = (-3.0, 15.0)
REVERB_IR_SECONDS = 0.5
EQ_LOW_HZ = 50.0  # --eq_db curves are flat below this
REVERB_BANK_SIZE = 512  # generated responses a run draws from (a function of the seed)
ACTIVE_FRAME_SAMPLES = 400  # 25 ms frames for the speech power of --background_snr_db
ACTIVE_FRAME_DB = 20  # frames within this of the loudest count as speech


def resample_clips(audio: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each clip [b, n] played factors[i] times faster (higher pitch), about the clip's centre.

    Linear interpolation (np.interp, one C call per clip: faster than a
    vectorized gather); samples read from outside the clip are zero.
    """
    count, samples = audio.shape
    centre = (samples - 1) / 2.0
    grid = np.arange(samples, dtype=np.float64) - centre
    source = np.arange(samples, dtype=np.float64)
    out = np.empty((count, samples), dtype=np.float32)
    for i in range(count):
        out[i] = np.interp(centre + grid * factors[i], source, audio[i], left=0.0, right=0.0)
    return out


def room_impulse_responses(count: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """count generated room impulse responses [count, REVERB_IR_SECONDS * sample_rate].

    A unit direct path followed by exponentially decaying Gaussian noise (60 dB
    down after a random RT60), at a random direct-to-reverberant ratio.
    """
    length = int(REVERB_IR_SECONDS * sample_rate)
    rt60 = rng.uniform(*REVERB_RT60_S, size=count)
    ratio_db = rng.uniform(*REVERB_DIRECT_TO_REVERBERANT_DB, size=count)
    t = np.arange(1, length)[None, :] / sample_rate
    tail = rng.standard_normal((count, length - 1)) * np.exp(-6.9078 * t / rt60[:, None])
    tail *= (10 ** (-ratio_db / 20) / np.sqrt(np.sum(tail ** 2, axis=1)))[:, None]
    return np.concatenate([np.ones((count, 1)), tail], axis=1).astype(np.float32)


def reverb_size(samples: int, sample_rate: int) -> int:
    """FFT length for convolving a clip with a REVERB_IR_SECONDS response."""
    import scipy.fft
    return scipy.fft.next_fast_len(samples + int(REVERB_IR_SECONDS * sample_rate) - 1, real=True)


def filter_clips(audio: np.ndarray, spectra: np.ndarray, size: int) -> np.ndarray:
    """Clips [b, n] filtered by the rfft spectra [b, size // 2 + 1] of filters, cut to n.
    size must leave room for the filter's response: n + its length - 1 for a causal one
    (reverberation), 2n for a zero-phase gain curve (--eq_db)."""
    import scipy.fft
    spectra = scipy.fft.rfft(audio, size, workers=-1) * spectra
    return scipy.fft.irfft(spectra, size, workers=-1)[:, :audio.shape[1]]


def reverberate(audio: np.ndarray, response_spectra: np.ndarray, size: int) -> np.ndarray:
    """Clips [b, n] convolved with responses given as rfft spectra [b, size // 2 + 1]
    (size at least n + response length - 1, e.g. reverb_size), cut to n, at the input's peak level."""
    wet = filter_clips(audio, response_spectra, size)
    peak_in = np.abs(audio).max(axis=1)
    peak_out = np.abs(wet).max(axis=1)
    scale = np.where(peak_out > 0, peak_in / np.maximum(peak_out, 1e-12), 0.0)
    return (wet * scale[:, None]).astype(np.float32)


def equalizer_gains(count: int, size: int, sample_rate: int, max_db: float,
                    rng: np.random.Generator) -> np.ndarray:
    """count smooth random gain curves [count, size // 2 + 1] over the rfft bins of size:
    a spectral tilt plus three cosines over log frequency (from EQ_LOW_HZ), scaled to a
    peak uniform in [0, max_db] dB."""
    frequencies = np.fft.rfftfreq(size, 1 / sample_rate)
    position = np.log(np.maximum(frequencies, EQ_LOW_HZ) / EQ_LOW_HZ) / np.log(
        sample_rate / 2 / EQ_LOW_HZ)  # 0 at EQ_LOW_HZ and below, 1 at Nyquist
    orders = np.arange(1, 4)[None, :, None]
    tilt = rng.uniform(-1, 1, (count, 1)) * (2 * position[None] - 1)
    ripples = rng.uniform(0, 1, (count, 3, 1)) / orders * np.cos(
        np.pi * orders * position[None, None] + rng.uniform(0, 2 * np.pi, (count, 3, 1)))
    curve = tilt + ripples.sum(axis=1)
    curve *= rng.uniform(0, max_db, (count, 1)) / np.maximum(np.abs(curve).max(axis=1,
                                                                                keepdims=True), 1e-9)
    return (10 ** (curve / 20)).astype(np.float32)


def active_power(audio: np.ndarray) -> np.ndarray:
    """Mean power of each clip's frames within ACTIVE_FRAME_DB of its loudest frame."""
    count, samples = audio.shape
    frames = samples // ACTIVE_FRAME_SAMPLES
    power = np.mean(np.square(audio[:, :frames * ACTIVE_FRAME_SAMPLES].reshape(
        count, frames, ACTIVE_FRAME_SAMPLES), dtype=np.float64), axis=2)
    active = power >= power.max(axis=1, keepdims=True) * 10 ** (-ACTIVE_FRAME_DB / 10)
    return np.sum(power * active, axis=1) / np.maximum(active.sum(axis=1), 1)




class Transform(Protocol):
    """One augmentation: float32 clips [batch, samples] -> the changed clips.

    silence: which clips are silence samples (all zeros before the background noise).
    """

    def __call__(self, audio: np.ndarray, silence: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Gain:
    """--gain_db: each clip scaled by a gain uniform in [-max_db, max_db] dB."""
    max_db: float

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gains = 10 ** (rng.uniform(-self.max_db, self.max_db, len(audio)) / 20)
        return audio * gains[:, None].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Resample:
    """--resample: each clip played faster or slower by a factor in [1 - r, 1 + r]."""
    max_change: float

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factors = rng.uniform(1 - self.max_change, 1 + self.max_change, len(audio))
        return resample_clips(audio, factors)


@dataclasses.dataclass(frozen=True)
class Equalizer:
    """--eq_db: each clip filtered by a smooth random gain curve of at most max_db dB."""
    max_db: float
    sample_rate: int

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = 2 * audio.shape[1]
        gains = equalizer_gains(len(audio), size, self.sample_rate, self.max_db, rng)
        return filter_clips(audio, gains, size)


class Reverb:
    """--reverb_probability: that share of the clips convolved with a room impulse response,
    drawn from REVERB_BANK_SIZE generated responses that the seed fixes (made at first use)."""

    def __init__(self, probability: float, sample_rate: int, seed: int):
        self.probability = probability
        self.sample_rate = sample_rate
        self.seed = seed
        self._spectra: Optional[np.ndarray] = None
        self._fft_size = 0

    def _bank(self, samples: int) -> np.ndarray:
        if self._spectra is None:
            import scipy.fft
            rng = np.random.default_rng([self.seed, 4 << 20])
            responses = room_impulse_responses(REVERB_BANK_SIZE, self.sample_rate, rng)
            self._fft_size = reverb_size(samples, self.sample_rate)
            self._spectra = scipy.fft.rfft(responses, self._fft_size).astype(np.complex64)
        return self._spectra

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = np.flatnonzero(rng.random(len(audio)) < self.probability)
        if not len(rows):
            return audio
        bank = self._bank(audio.shape[1])
        choice = rng.integers(0, len(bank), size=len(rows))
        audio = audio.copy()
        audio[rows] = reverberate(audio[rows], bank[choice], self._fft_size)
        return audio


@dataclasses.dataclass(frozen=True)
class TimeShift:
    """--time_shift_ms: each clip moved by up to samples, earlier or later, padded with zeros."""
    samples: int

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length = audio.shape[1]
        offsets = rng.integers(-self.samples, self.samples + 1, size=len(audio))
        shifted = np.zeros_like(audio)
        for i, offset in enumerate(offsets):
            if offset > 0:
                shifted[i, offset:] = audio[i, :length - offset]
            elif offset < 0:
                shifted[i, :length + offset] = audio[i, -offset:]
            else:
                shifted[i] = audio[i]
        return shifted


class BackgroundNoise:
    """Noise recordings mixed into the clips, as in TensorFlow's speech_commands example.

    A clip gets noise with probability `frequency`, at a volume uniform in
    [0, volume) -- or, with snr_db (--background_snr_db), at a signal-to-noise
    ratio uniform in that range; a silence sample always gets noise, at a
    volume uniform in [0, 1). Also makes the silence clips of evaluation sets.
    """

    def __init__(self, noises: Sequence[np.ndarray], frequency: float = DEFAULT_BACKGROUND_FREQUENCY,
                 volume: float = DEFAULT_BACKGROUND_VOLUME,
                 snr_db: Optional[Tuple[float, float]] = None):
        self.noises = list(noises)
        self.frequency = frequency
        self.volume = volume
        self.snr_db = snr_db

    def __call__(self, audio: np.ndarray, silence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = len(audio)
        use_background = rng.random(batch) < self.frequency
        volumes = np.where(use_background, rng.uniform(0, self.volume, batch), 0.0)
        volumes = np.where(silence, rng.uniform(0, 1, batch), volumes)
        if self.snr_db is not None:
            self._add_at_snr(audio, use_background, volumes, silence, rng)
        else:
            self._add(audio, volumes, rng)
        return audio

    def silence(self, count: int, samples: int, rng: np.random.Generator) -> np.ndarray:
        """count int16 clips of noise, each at a random volume in [0, 1) (zeros without noise)."""
        clips = np.zeros((count, samples), dtype=np.float32)
        if self.noises:
            self._add(clips, rng.uniform(0, 1, count), rng)
        return np.round(clips * 32767).astype(np.int16)

    def _add(self, audio: np.ndarray, volumes: np.ndarray, rng: np.random.Generator) -> None:
        """Mixes a random stretch of a random recording into each clip, in place, clipped to [-1, 1]."""
        rows, segments = self._segments(audio.shape, volumes > 0, rng)
        for i, segment in zip(rows, segments):
            audio[i] += volumes[i] * segment
        np.clip(audio, -1.0, 1.0, out=audio)

    def _segments(self, shape: Tuple[int, int], active: np.ndarray, rng: np.random.Generator
                  ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """A random stretch of a random recording for each active row: (rows, stretches)."""
        count, samples = shape
        noise_choice = rng.integers(0, len(self.noises), size=count)
        rows = np.flatnonzero(active)
        segments = []
        for i in rows:
            noise = self.noises[noise_choice[i]]
            if len(noise) < samples:
                noise = np.resize(noise, samples)
            start = rng.integers(0, len(noise) - samples + 1)
            segments.append(noise[start:start + samples])
        return rows, segments

    def _add_at_snr(self, audio: np.ndarray, use_background: np.ndarray, silence_volumes: np.ndarray,
                    silence: np.ndarray, rng: np.random.Generator) -> None:
        """Noise at a random SNR for speech samples, at silence_volumes for silence; in place."""
        snr_db = rng.uniform(*self.snr_db, size=len(audio))
        speech_power = active_power(audio)
        rows, segments = self._segments(audio.shape, use_background | silence, rng)
        for i, segment in zip(rows, segments):
            if silence[i]:
                audio[i] += silence_volumes[i] * segment
                continue
            noise_power = float(np.mean(np.square(segment, dtype=np.float64)))
            if noise_power > 0 and speech_power[i] > 0:
                audio[i] += np.float32(math.sqrt(speech_power[i] / noise_power) *
                                       10 ** (-snr_db[i] / 20)) * segment
        np.clip(audio, -1.0, 1.0, out=audio)


def transforms(settings: Augmentation, time_shift_samples: int, background: BackgroundNoise,
               sample_rate: int, seed: int) -> List[Transform]:
    """The transforms that the settings turn on, in the order they apply."""
    steps: List[Transform] = []
    if settings.gain_db > 0:
        steps.append(Gain(settings.gain_db))
    if settings.resample > 0:
        steps.append(Resample(settings.resample))
    if settings.eq_db > 0:
        steps.append(Equalizer(settings.eq_db, sample_rate))
    if settings.reverb_probability > 0:
        steps.append(Reverb(settings.reverb_probability, sample_rate, seed))
    if time_shift_samples > 0:
        steps.append(TimeShift(time_shift_samples))
    if background.noises:
        steps.append(background)
    return steps


def apply(steps: Sequence[Transform], clips: np.ndarray, silence: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """int16 clips [batch, samples] through the transforms: float32 in [-1, 1]."""
    audio = clips.astype(np.float32) / 32768.0
    for step in steps:
        audio = step(audio, silence, rng)
    return np.clip(audio, -1.0, 1.0)


class SpecAugment:
    """SpecAugment's time and coefficient masks on the fingerprints of a training batch."""

    def __init__(self, settings: Augmentation, frames: int, coefficients: int, seed: int):
        self.settings = settings
        self.frames = frames
        self.coefficients = coefficients
        self.seed = seed

    @property
    def enabled(self) -> bool:
        return self.settings.masks

    def masks(self, batch_size: int, step: int) -> np.ndarray:
        """float32 [batch, frames, coefficients] of 0 and 1 for step's batch: a pure function
        of (seed, step), drawn apart from the audio augmentation."""
        rng = np.random.default_rng([self.seed, 2 << 20, step])
        settings = self.settings

        def bands(size: int, count: int, widest: int) -> np.ndarray:
            if count <= 0 or widest <= 0:
                return np.zeros((batch_size, size), dtype=bool)
            widths = rng.integers(0, min(widest, size) + 1, size=(batch_size, count))
            starts = (rng.random((batch_size, count)) * (size - widths + 1)).astype(np.int64)
            index = np.arange(size)[None, None, :]
            return np.any((index >= starts[..., None]) & (index < (starts + widths)[..., None]), axis=1)

        masked_time = bands(self.frames, settings.time_masks, settings.time_mask_max)
        masked_frequency = bands(self.coefficients, settings.frequency_masks,
                                 settings.frequency_mask_max)
        keep = ~masked_time[:, :, None] & ~masked_frequency[:, None, :]
        return keep.astype(np.float32)


def training_augmenters(settings: Augmentation, noises: Sequence[np.ndarray], frequency: float,
                        volume: float, time_shift_ms: float, model_settings: ModelSettings,
                        seed: int) -> Tuple[BackgroundNoise, List[Transform], SpecAugment]:
    """What augments training batches: the background noise, the audio transforms and the
    SpecAugment masks, as the in-memory data (input_data.AudioProcessor) and the shard
    stream (records.ShardedData) both build them."""
    background = BackgroundNoise(noises, frequency, volume, settings.background_snr_db)
    shift = int(time_shift_ms * model_settings.sample_rate / 1000)
    return (background, transforms(settings, shift, background, model_settings.sample_rate, seed),
            SpecAugment(settings, model_settings.spectrogram_length,
                        model_settings.dct_coefficient_count, seed))
