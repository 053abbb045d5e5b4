"""Training fingerprints mixed in the spectrum: no FFT per training step.

The short-time Fourier transform is linear. Shift a clip by k whole hops (window
strides), add a stretch of noise that starts on a hop, and the frames of the sum
are the clip's frames moved by k plus the noise stretch's frames times its volume:

    STFT(shift(clip, k * hop) + a * noise[s * hop:]) = STFT(padded clip)[K - k:][:frames]
                                                        + a * STFT(noise)[s:][:frames]

So the spectra of every training clip (padded with K hops of zeros on each side,
K = --time_shift_ms in whole hops) and of every noise recording (a frame at
every hop) are computed once, at start-up, and a training batch costs a gather,
a multiply-add, the magnitude and the filterbank (features.features_from_magnitude).
The draws are those of kws/data/augmentation.py's TimeShift, Gain and BackgroundNoise
(--background_volume), with the time shift and the noise start in whole hops, and
nothing is clipped to [-1, 1] after the mix. The other augmentations (resampling,
reverberation, --eq_db, --background_snr_db) change the audio in ways that are not a
sum of spectra: with them, training batches are made from the audio (input_data).

Memory: the clip spectra are bfloat16 (real, imaginary), kept as the upper 16 bits of
their float32 values (rounded to nearest even): numpy widens them back with one shift,
where its float16 conversion has no vector path and took two thirds of a batch's time.
That is 4 * (frames + 2K) * bins bytes a clip, e.g. 60 KB for DS-CNN's 40 ms / 20 ms
frames and 2 GB for the 35,000 training clips of the real folder with every unknown clip.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np

from kws import features
from kws.cli import UsageError
from kws.data.augmentation import Augmentation
from kws.features import ModelSettings

MEMORY_SHARE = 0.5  # auto uses the spectrum when its cache takes at most this share of free memory
SPECTRUM_CHUNK = 512  # clips transformed at once when the cache is built


@dataclasses.dataclass(frozen=True)
class SpectralDraws:
    """The random draws of one batch: time shift in hops, gain, noise recording, its start
    frame and volume (0: no noise)."""
    shifts: np.ndarray
    gains: np.ndarray
    noise_choice: np.ndarray
    noise_starts: np.ndarray
    volumes: np.ndarray


def frame_geometry(settings: ModelSettings) -> Tuple[int, int, int]:
    """(window samples, hop samples, rfft length) of the settings' frames."""
    return settings.window_size_samples, settings.window_stride_samples, settings.fft_length


def short_time_spectra(audio: np.ndarray, settings: ModelSettings, bins: int) -> np.ndarray:
    """complex64 [..., frames, bins] spectra of float audio [..., samples], one frame per hop:
    the periodic Hann window and the rfft of the fingerprint's front end."""
    import scipy.fft
    window, hop, fft_length = frame_geometry(settings)
    hann = features.hann_window(window).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, window, axis=-1)[..., ::hop, :]
    return scipy.fft.rfft(frames * hann, fft_length, workers=-1)[..., :bins].astype(np.complex64)


def cache_bytes(clip_count: int, settings: ModelSettings, shift_hops: int, bins: int) -> int:
    """Bytes of the bfloat16 clip spectra of clip_count clips."""
    return 4 * clip_count * (settings.spectrogram_length + 2 * shift_hops) * bins


def free_memory_bytes() -> int:
    """Memory the system has available now (MemAvailable), or 0 where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """uint16: the upper half of float32 values' bits, rounded to nearest even (bfloat16)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    return ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)


def widen_bfloat16(bits: np.ndarray, out: np.ndarray) -> None:
    """Writes the float32 values of bfloat16 bits (as bfloat16_bits gives them) into out."""
    np.left_shift(bits, 16, out=out.view(np.uint32), dtype=np.uint32)


def as_pairs(spectra: np.ndarray) -> np.ndarray:
    """float32 [..., 2] (real, imaginary) of complex spectra: the layout of the mixer's arrays,
    so that a noise stretch is added to a clip's spectra in one contiguous operation."""
    return np.stack([spectra.real, spectra.imag], -1)


class SpectralMixer:
    """The spectra of a set of int16 clips and of the noise recordings, and the magnitude
    spectra of augmented batches made from them."""

    def __init__(self, clips: np.ndarray, noises: Sequence[np.ndarray], settings: ModelSettings,
                 max_shift_samples: int, bins: int):
        window, hop, _ = frame_geometry(settings)
        self.settings = settings
        self.bins = bins
        self.frames = settings.spectrogram_length
        self.shift_hops = max_shift_samples // hop
        pad = self.shift_hops * hop
        count = len(clips)
        self.clip_spectra = np.empty((count, self.frames + 2 * self.shift_hops, bins, 2), np.uint16)
        for start in range(0, count, SPECTRUM_CHUNK):
            chunk = clips[start:start + SPECTRUM_CHUNK].astype(np.float32) / features.PCM_SCALE
            spectra = short_time_spectra(np.pad(chunk, ((0, 0), (pad, pad))), settings, bins)
            self.clip_spectra[start:start + len(chunk)] = bfloat16_bits(as_pairs(spectra))
        self.noise_spectra: List[np.ndarray] = [
            as_pairs(short_time_spectra(np.resize(noise, max(len(noise), settings.desired_samples)
                                                  ).astype(np.float32), settings, bins))
            for noise in noises]
        self._buffers = threading.local()

    def magnitude(self, rows: np.ndarray, draws: SpectralDraws) -> np.ndarray:
        """float32 magnitude spectra [batch, frames, bins] of clips rows, shifted, scaled by
        their gains and mixed with their noise stretches (the mix is made in this thread's
        buffer, which the next call reuses)."""
        spectra = self._workspace(len(rows))
        starts = self.shift_hops - draws.shifts
        for i, (row, start) in enumerate(zip(rows, starts)):
            widen_bfloat16(self.clip_spectra[row, start:start + self.frames], spectra[i])
        spectra *= draws.gains[:, None, None, None]
        for i in np.flatnonzero(draws.volumes > 0):
            noise = self.noise_spectra[draws.noise_choice[i]]
            start = draws.noise_starts[i]
            spectra[i] += draws.volumes[i] * noise[start:start + self.frames]
        np.square(spectra, out=spectra)
        magnitude = np.add(spectra[..., 0], spectra[..., 1])
        return np.sqrt(magnitude, out=magnitude)

    def _workspace(self, batch_size: int) -> np.ndarray:
        """This thread's float32 [batch_size, frames, bins, 2] buffer: allocated once, so that
        a batch does not fault in 10 MB of fresh pages."""
        buffer = getattr(self._buffers, "spectra", None)
        if buffer is None or len(buffer) != batch_size:
            buffer = np.empty((batch_size, self.frames, self.bins, 2), np.float32)
            self._buffers.spectra = buffer
        return buffer

    def noise_frames(self, choice: np.ndarray) -> np.ndarray:
        """How many start frames each chosen recording offers a stretch of self.frames."""
        counts = np.array([len(spectra) - self.frames + 1 for spectra in self.noise_spectra])
        return counts[choice]


@dataclasses.dataclass(frozen=True)
class DrawSettings:
    """What the spectral draws follow: the flags of TimeShift, Gain and BackgroundNoise."""
    max_shift_hops: int
    gain_db: float
    noise_count: int
    frequency: float
    volume: float


def draw(settings: DrawSettings, mixer: SpectralMixer, silence: np.ndarray,
         rng: np.random.Generator) -> SpectralDraws:
    """One batch's draws, in kws/data/augmentation.py's order: gain, time shift, background noise."""
    count = len(silence)
    gains = np.ones(count, np.float32)
    if settings.gain_db > 0:
        gains = (10 ** (rng.uniform(-settings.gain_db, settings.gain_db, count) / 20)).astype(np.float32)
    shifts = np.zeros(count, np.int64)
    if settings.max_shift_hops > 0:
        shifts = rng.integers(-settings.max_shift_hops, settings.max_shift_hops + 1, size=count)
    choice = np.zeros(count, np.int64)
    starts = np.zeros(count, np.int64)
    volumes = np.zeros(count, np.float32)
    if settings.noise_count:
        use = rng.random(count) < settings.frequency
        volumes = np.where(use, rng.uniform(0, settings.volume, count), 0.0)
        volumes = np.where(silence, rng.uniform(0, 1, count), volumes).astype(np.float32)
        choice = rng.integers(0, settings.noise_count, size=count)
        starts = (rng.random(count) * mixer.noise_frames(choice)).astype(np.int64)
    return SpectralDraws(shifts, gains, choice, starts, volumes)


def fingerprints(magnitude: np.ndarray, settings: ModelSettings,
                 masks: Optional[np.ndarray] = None) -> np.ndarray:
    """float32 fingerprints [batch, fingerprint_size] of magnitude spectra [batch, frames, bins],
    times SpecAugment's keep-masks [batch, frames, coefficients] when given."""
    values = features.features_from_magnitude(magnitude[..., :features.spectrum_bins(settings)], settings)
    if masks is not None:
        values = values * masks
    return values.reshape(len(magnitude), -1).astype(np.float32)


def shared_bins(all_settings: Sequence[ModelSettings]) -> int:
    """The spectrum bins that the features of every settings read."""
    return max(features.spectrum_bins(settings) for settings in all_settings)


def same_frames(first: ModelSettings, second: ModelSettings) -> bool:
    """Whether two settings frame a clip identically (their features can share spectra)."""
    return (first.sample_rate, first.desired_samples, first.window_size_samples,
            first.window_stride_samples, first.fft_length) == (
        second.sample_rate, second.desired_samples, second.window_size_samples,
        second.window_stride_samples, second.fft_length)


def why_not(domain: str, audio_only: Sequence[str], cache: int, available: int,
            frames_agree: bool = True) -> Optional[str]:
    """Why training batches cannot be mixed in the spectrum (domain 'auto' or 'spectrum'),
    or None when they can: audio_only, the augmentations that need the audio, are on; a
    teacher frames the audio differently (not frames_agree); or (auto only) the cache of
    `cache` bytes would take over MEMORY_SHARE of `available`."""
    if audio_only:
        return f"{', '.join(audio_only)} change the audio in ways that are not a sum of spectra"
    if not frames_agree:
        return "a teacher frames the audio differently from the student (window, stride or rate)"
    if domain == "auto" and available and cache > MEMORY_SHARE * available:
        return (f"the spectra would take {cache / 2**30:.1f} GB of the {available / 2**30:.1f} GB "
                f"of free memory")
    return None


def mixer_for(clips: np.ndarray, noises: Sequence[np.ndarray], settings: ModelSettings,
              teachers: Sequence[ModelSettings], augmentation: Augmentation,
              time_shift_samples: int) -> Optional[SpectralMixer]:
    """The SpectralMixer of the training clips for the student's and the teachers' features,
    or None (saying why) where --augmentation_domain or what is on asks for batches mixed as
    audio; UsageError where --augmentation_domain spectrum cannot be had."""
    domain = augmentation.augmentation_domain
    if domain == "audio":
        return None
    bins = shared_bins([settings, *teachers])
    reason = why_not(domain, augmentation.audio_only(),
                     cache_bytes(len(clips), settings, time_shift_samples // settings.window_stride_samples,
                                 bins), free_memory_bytes(),
                     all(same_frames(settings, teacher) for teacher in teachers))
    if reason:
        if domain == "spectrum":
            raise UsageError(f"--augmentation_domain spectrum: {reason}")
        print(f"Training batches mixed as audio: {reason}")
        return None
    mixer = SpectralMixer(clips, noises, settings, time_shift_samples, bins)
    print(describe(mixer), flush=True)
    return mixer


def describe(mixer: SpectralMixer) -> str:
    """One line about the cache, for the start of training."""
    size = mixer.clip_spectra.nbytes + sum(spectra.nbytes for spectra in mixer.noise_spectra)
    return (f"Training batches mixed in the spectrum: {len(mixer.clip_spectra)} clip spectra, "
            f"{mixer.bins} bins, time shift in whole hops of {mixer.settings.window_stride_ms:g} ms "
            f"(at most {mixer.shift_hops}), {size / 2**20:.0f} MB")

