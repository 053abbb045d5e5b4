"""Speech Commands data: download, split, load, augment and fingerprint.

The fingerprint of a clip is the MFCC that TensorFlow's `audio_spectrogram`
(magnitude squared) and `mfcc` ops compute, flattened time-major; Arm's
published "Hello Edge" models were trained on exactly these features. Here
they are computed in batches with tf.signal and two constant matrices that
reproduce the ops' mel filterbank and DCT (tests/test_input_data.py compares
the two), several times faster than the per-clip ops.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import cli
from cli import UsageError
from models import ModelSettings, prepare_model_settings

tf = cli.import_tensorflow()

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M
SILENCE_LABEL = "_silence_"
SILENCE_INDEX = 0
UNKNOWN_WORD_LABEL = "_unknown_"
UNKNOWN_WORD_INDEX = 1
BACKGROUND_NOISE_DIR_NAME = "_background_noise_"
RANDOM_SEED = 59185
DEFAULT_DATA_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
DEFAULT_WANTED_WORDS = "yes,no,up,down,left,right,on,off,stop,go"
PARTITIONS = ("training", "validation", "testing")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
DEFAULT_AUDIO_CACHE_DIR = os.path.join(tempfile.gettempdir(), "kws_audio_cache")
MIN_FILE_SAMPLE_RATE = 1000  # below this a header is garbage, and resampling would expand it 16x+

# Constants of TensorFlow's mfcc op (tensorflow/core/kernels/mfcc.cc).
MFCC_LOWER_FREQUENCY_LIMIT = 20.0
MFCC_UPPER_FREQUENCY_LIMIT = 4000.0
MFCC_FILTERBANK_CHANNEL_COUNT = 40
MFCC_FILTERBANK_FLOOR = 1e-12


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the data set, its split, augmentation and the fingerprint."""
    group = parser.add_argument_group("data")
    group.add_argument("--data_url", default=DEFAULT_DATA_URL,
                       help="Location of the speech training data archive; '' uses --data_dir as it is.")
    group.add_argument("--data_dir", default="/tmp/speech_dataset/",
                       help="Where the speech training data is (or is downloaded to): folders of "
                            "<word>/<clip> in any of " + " ".join(AUDIO_EXTENSIONS) + ". Several "
                            "sources as a comma list (e.g. real recordings,synthesized keywords): "
                            "their word folders are merged, each clip split by the same hash rule; "
                            "--data_url downloads into the first.")
    group.add_argument("--background_noise_dir", default=None,
                       help="A folder of long noise recordings to mix into training clips and "
                            "silence, in addition to each --data_dir's _background_noise_/.")
    group.add_argument("--audio_cache_dir", default=DEFAULT_AUDIO_CACHE_DIR,
                       help="Where clips decoded from compressed formats (.flac .ogg .opus .mp3) "
                            "are kept, keyed by the file list and the sample rate and length, so "
                            "that the next run loads them in seconds ('' for no cache).")
    group.add_argument("--test_dir", default=None,
                       help="An evaluation folder in the layout of speech_commands_test_set_v0.02: one "
                            "folder per label, _silence_ and _unknown_ included, every clip labelled by its folder.")
    group.add_argument("--wanted_words", default=DEFAULT_WANTED_WORDS,
                       help="Words to use (others are added to the _unknown_ label).")
    group.add_argument("--validation_percentage", type=cli.non_negative_float, default=10,
                       help="What percentage of wavs to use as a validation set.")
    group.add_argument("--testing_percentage", type=cli.non_negative_float, default=10,
                       help="What percentage of wavs to use as a test set.")
    group.add_argument("--silence_percentage", type=cli.non_negative_float, default=10.0,
                       help="How much of the training data should be silence.")
    group.add_argument("--unknown_percentage", type=cli.non_negative_float, default=10.0,
                       help="How much of the training data should be unknown words.")
    group.add_argument("--time_shift_ms", type=cli.non_negative_float, default=100.0,
                       help="Range to randomly shift the training audio by in time.")
    group.add_argument("--background_frequency", type=cli.fraction, default=0.8,
                       help="How many of the training samples have background noise mixed in.")
    group.add_argument("--background_volume", type=cli.fraction, default=0.1,
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
    group.add_argument("--time_masks", type=int, default=0,
                       help="SpecAugment: how many time masks on each training fingerprint.")
    group.add_argument("--time_mask_max", type=int, default=0,
                       help="SpecAugment: widest time mask, in frames.")
    group.add_argument("--frequency_masks", type=int, default=0,
                       help="SpecAugment: how many coefficient masks on each training fingerprint.")
    group.add_argument("--frequency_mask_max", type=int, default=0,
                       help="SpecAugment: widest coefficient mask, in MFCC coefficients.")
    group.add_argument("--extra_unknown_dirs", type=cli.comma_list(str), default=[],
                       help="Comma-separated folders of <word>/<clip> whose words (other than the "
                            "wanted ones) are added to _unknown_, split by the same hash rule.")
    group.add_argument("--validation_dir", default=None,
                       help="Select the best model on this folder instead of the validation "
                            "partition: evaluation-folder layout, the wanted words by name, other "
                            "word folders as _unknown_ (at most half as many clips as the keywords), "
                            "plus noise silence at --silence_percentage. Never the test folder.")
    group.add_argument("--seed", type=int, default=RANDOM_SEED,
                       help="Fixes the choice of silence/unknown samples, the augmentation and the "
                            "initialization.")
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

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Augmentation":
        for name in ("time_masks", "time_mask_max", "frequency_masks", "frequency_mask_max"):
            if getattr(args, name, 0) < 0:
                raise UsageError(f"--{name} must be 0 or more, got {getattr(args, name)}")
        return cls(**{field.name: getattr(args, field.name, field.default)
                      for field in dataclasses.fields(cls)})

    @property
    def masks(self) -> bool:
        return (self.time_masks > 0 and self.time_mask_max > 0) or \
            (self.frequency_masks > 0 and self.frequency_mask_max > 0)


REVERB_RT60_S = (0.15, 0.8)
REVERB_DIRECT_TO_REVERBERANT_DB = (-3.0, 15.0)
REVERB_IR_SECONDS = 0.5
EQ_LOW_HZ = 50.0  # --eq_db curves are flat below this
REVERB_BANK_SIZE = 512  # generated responses a run draws from (a function of the seed)
VALIDATION_UNKNOWN_RATIO = 0.5  # --validation_dir: unknown clips at most this share of keyword clips
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


def wanted_words_from_flags(args: argparse.Namespace) -> List[str]:
    """The --wanted_words list, checked."""
    words = [word.strip().lower() for word in args.wanted_words.split(",") if word.strip()]
    if not words:
        raise UsageError("--wanted_words is empty; expected comma-separated words such as yes,no")
    if len(set(words)) != len(words):
        raise UsageError(f"--wanted_words lists a word twice: {args.wanted_words}")
    return words


def prepare_words_list(wanted_words: Sequence[str]) -> List[str]:
    """The labels of a model: silence, unknown, then the wanted words."""
    return [SILENCE_LABEL, UNKNOWN_WORD_LABEL] + list(wanted_words)


def model_settings_from_flags(args: argparse.Namespace) -> ModelSettings:
    """ModelSettings from the data flags."""
    return prepare_model_settings(len(prepare_words_list(wanted_words_from_flags(args))),
                                  args.sample_rate, args.clip_duration_ms, args.window_size_ms,
                                  args.window_stride_ms, args.dct_coefficient_count)


def which_set(filename: str, validation_percentage: float, testing_percentage: float) -> str:
    """Determines which partition a file belongs to, by the data set's standard rule.

    The name up to `_nohash_` identifies the speaker; its SHA-1 picks the
    partition, so a speaker's clips stay together and the split is stable as
    files are added.
    """
    base_name = os.path.basename(filename)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = ((int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) *
                       (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def _print_progress(count: int, block_size: int, total_size: int) -> None:
    done = count * block_size
    if total_size > 0:
        sys.stdout.write(f"\r>> Downloading {100.0 * min(done, total_size) / total_size:5.1f}%")
    else:
        sys.stdout.write(f"\r>> Downloading {done / 1e6:.1f} MB")
    sys.stdout.flush()


def maybe_download_and_extract_dataset(data_url: str, data_dir: str) -> None:
    """Downloads and extracts the archive at data_url into data_dir, unless already done.

    Nothing happens when data_url is empty, or when data_dir already holds the
    extracted archive (a marker file records a completed extraction).
    """
    if not data_url:
        return
    filename = data_url.split("/")[-1]
    marker = os.path.join(data_dir, f".extracted_{filename}")
    if os.path.exists(marker):
        return
    os.makedirs(data_dir, exist_ok=True)
    filepath = os.path.join(data_dir, filename)
    if not os.path.exists(filepath):
        partial = filepath + ".partial"
        try:
            urllib.request.urlretrieve(data_url, partial, _print_progress)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise UsageError(f"could not download --data_url {data_url} ({reason}); without network, "
                             f"pass --data_url '' and a local --data_dir")
        print()
        os.replace(partial, filepath)
        print(f"Downloaded {filename} ({os.path.getsize(filepath)} bytes)")
    try:
        with tarfile.open(filepath, "r:gz") as archive:
            archive.extractall(data_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UsageError(f"could not extract {filepath}: {error}; delete it and download again")
    with open(marker, "w") as handle:
        handle.write(data_url + "\n")


def read_wav(path: str, sample_rate: int, desired_samples: int) -> np.ndarray:
    """Reads an audio file as int16 mono at sample_rate, padded or cropped to desired_samples.

    16-bit mono PCM at the right rate is read directly; anything else (other
    rates, stereo, 8/24/32-bit, float, other formats soundfile or audioread
    read, as librosa.load would) is converted. Raises ValueError naming the
    file when it cannot be read or is empty.
    """
    audio = read_audio(path, sample_rate)
    if audio.size == 0:
        raise ValueError(f"{path}: no audio samples")
    if audio.size < desired_samples:
        audio = np.pad(audio, (0, desired_samples - audio.size))
    return audio[:desired_samples]


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """A whole audio file as int16 mono at sample_rate; ValueError naming the file if unreadable.

    Whatever a malformed file makes a decoder raise (wave's RuntimeError and
    struct.error, libsndfile errors, EOFError, MemoryError, ...) ends here as
    ValueError("<path>: <one-line reason>"), never as anything else.
    """
    try:
        audio = _read_pcm16(path, sample_rate)
        return _read_any(path, sample_rate) if audio is None else audio
    except Exception as error:  # noqa: BLE001  (the last guard: decoders raise anything on garbage)
        if isinstance(error, ValueError) and str(error).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: unreadable audio ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    """A decoder's exception as one line: libsndfile's message without the path it repeats,
    else the message, with the exception's type where the message alone says little."""
    text = getattr(error, "error_string", None)  # soundfile.LibsndfileError
    if not text and isinstance(error, OSError) and error.strerror:
        text = error.strerror  # without the file name it repeats
    if not text:
        text = str(error)
        if not isinstance(error, (OSError, ValueError)) or not text:
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return " ".join(text.split())


def _read_pcm16(path: str, sample_rate: int) -> Optional[np.ndarray]:
    """Fast path: 16-bit mono PCM WAV at sample_rate, else None.

    None also for a header the wave module cannot parse (it raises wave.Error,
    EOFError, RuntimeError, struct.error, ... on garbage): _read_any tries next.
    ValueError naming the file when it cannot be opened at all.
    """
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ValueError(f"{path}: {_one_line(error)}") from None
    with handle:
        try:
            with wave.open(handle, "rb") as wav:
                if (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) != (2, 1, sample_rate):
                    return None
                frames = wav.getnframes()
                if frames > 1 << 22:  # a header can claim 4 GiB: ask for no more than the file holds
                    frames = min(frames, os.fstat(handle.fileno()).st_size // 2)
                data = wav.readframes(frames)
        except Exception:  # noqa: BLE001  (a malformed header: the slow path decides)
            return None
    # A truncated file can end in half a sample: keep the whole samples.
    return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.int16)


def _read_any(path: str, sample_rate: int) -> np.ndarray:
    """Slow path: any format soundfile/audioread read, converted to int16 mono at sample_rate.

    These are the two readers librosa.load tries, called directly: importing
    librosa itself takes seconds. soundfile is read in blocks, so a header that
    claims an absurd length allocates only what the file really decodes to.
    """
    import soundfile

    try:
        with soundfile.SoundFile(path) as source:
            file_rate = source.samplerate
            block = max(1, (1 << 20) // max(1, source.channels))  # at most 4 MiB of float32
            parts = []
            while True:
                data = source.read(block, dtype="float32", always_2d=True)
                if len(data):
                    parts.append(data.mean(axis=1))
                if len(data) < block:
                    break
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    except Exception as sf_error:  # noqa: BLE001  (soundfile raises several types)
        try:
            audio, file_rate = _read_audioread(path)
        except Exception:  # noqa: BLE001  (audioread too)
            raise ValueError(f"{path}: unreadable audio ({_one_line(sf_error)})") from None
    if audio.size and file_rate != sample_rate:
        if file_rate < MIN_FILE_SAMPLE_RATE:
            raise ValueError(f"{path}: implausible sample rate {file_rate} Hz "
                             f"(under {MIN_FILE_SAMPLE_RATE} Hz: a damaged header?)")
        try:
            audio = _resample(audio, int(file_rate), sample_rate)
        except Exception as error:  # noqa: BLE001  (soxr/librosa on absurd rates or sizes)
            raise ValueError(f"{path}: could not resample from {file_rate} Hz "
                             f"({_one_line(error)})") from None
    audio = np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0)  # garbage read as float
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _read_audioread(path: str) -> Tuple[np.ndarray, int]:
    """Decodes with audioread (ffmpeg, GStreamer, ... where installed) to float32 mono.

    Raises whatever the backend raises on a malformed file; _read_any turns it into ValueError.
    """
    import audioread

    with audioread.audio_open(path) as source:  # yields 16-bit little-endian PCM blocks
        file_rate, channels = source.samplerate, max(1, source.channels)
        data = b"".join(source)
    audio = np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    audio = audio[:len(audio) // channels * channels].reshape(-1, channels).mean(axis=1)
    return audio, int(file_rate)


def _resample(audio: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """librosa.resample's default (soxr 'HQ'), without librosa's slow first import."""
    try:
        import soxr
    except ImportError:
        import librosa
        return librosa.resample(audio, orig_sr=file_rate, target_sr=sample_rate)
    return soxr.resample(audio, file_rate, sample_rate, quality="HQ").astype(np.float32)


def audio_files(folder: str) -> List[str]:
    """The audio files (every format in AUDIO_EXTENSIONS) directly in folder, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(AUDIO_EXTENSIONS) and
                  os.path.isfile(os.path.join(folder, name)))


def word_folder_files(folder: str) -> List[str]:
    """The audio files of every sub-folder of folder (<folder>/<word>/<clip>), sorted."""
    if not os.path.isdir(folder):
        return []
    words = sorted(entry for entry in os.listdir(folder) if os.path.isdir(os.path.join(folder, entry)))
    return [path for word in words for path in audio_files(os.path.join(folder, word))]


def data_dirs_from_flag(data_dir: str) -> List[str]:
    """The folders of a --data_dir comma list, in order, each once."""
    folders = list(dict.fromkeys(part.strip() for part in data_dir.split(",") if part.strip()))
    if not folders:
        raise UsageError("--data_dir is empty; expected a folder or a comma list of folders")
    return folders


def load_clips(paths: Sequence[str], sample_rate: int, desired_samples: int,
               cache_dir: Optional[str] = None) -> Tuple[np.ndarray, List[int], List[str]]:
    """Reads many files in parallel.

    Returns the clips as an int16 array [n, desired_samples] for the files that
    could be read, their positions in paths, and one error line per file that
    could not. With cache_dir, every folder holding compressed files is decoded
    whole, once, and kept there (see ClipCache), so that any selection of its
    files (another seed, --unknown_percentage, partition) loads from the cache.
    """
    if not cache_dir or all(path.lower().endswith(".wav") for path in paths):
        return _decode_clips(paths, sample_rate, desired_samples)
    clip_of: Dict[str, np.ndarray] = {}
    error_of: Dict[str, str] = {}
    paths_of: Dict[str, set] = {}
    for path in paths:
        paths_of.setdefault(os.path.dirname(path), set()).add(path)
    cached_count = decoded_count = 0
    for folder in sorted(paths_of):
        members = sorted(set(audio_files(folder)) | paths_of[folder])
        cache = ClipCache(cache_dir, members, sample_rate, desired_samples)
        entry = cache.load()
        if entry is None:
            entry = _decode_clips(members, sample_rate, desired_samples)
            cache.save(*entry)
            decoded_count += len(members)
        else:
            cached_count += len(members)
        audio, kept, errors = entry
        clip_of.update((members[i], audio[row]) for row, i in enumerate(kept))
        failed = sorted(set(range(len(members))) - set(kept))
        error_of.update((members[i], error) for i, error in zip(failed, errors))
    if cached_count:
        print(f"Loaded {cached_count} decoded clips of {len(paths_of)} folders from the cache {cache_dir}")
    if decoded_count:
        print(f"Decoded {decoded_count} clips and kept them in the cache {cache_dir}")
    kept = [i for i, path in enumerate(paths) if path in clip_of]
    audio = np.zeros((len(kept), desired_samples), dtype=np.int16)
    for row, i in enumerate(kept):
        audio[row] = clip_of[paths[i]]
    return audio, kept, [error_of[path] for path in paths if path not in clip_of]


def _decode_clips(paths: Sequence[str], sample_rate: int, desired_samples: int
                  ) -> Tuple[np.ndarray, List[int], List[str]]:
    """load_clips without a cache: (clips, positions of the readable files, error lines)."""
    def read(path: str):
        try:
            return read_wav(path, sample_rate, desired_samples)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        results = list(pool.map(read, paths))
    kept = [i for i, result in enumerate(results) if not isinstance(result, str)]
    errors = [result for result in results if isinstance(result, str)]
    audio = np.zeros((len(kept), desired_samples), dtype=np.int16)
    for row, i in enumerate(kept):
        audio[row] = results[i]
    return audio, kept, errors


class ClipCache:
    """Decoded clips of one file list (a folder's) on disk: <cache_dir>/<key>/{audio.npy,index.json}.

    The key is a SHA-1 of the sample rate, the clip length and every file's
    path, size and modification time, so any change to the list or a file
    decodes again. A cache entry is written to a temporary folder and renamed
    into place: an interrupted run leaves no half-written entry.
    """

    def __init__(self, cache_dir: str, paths: Sequence[str], sample_rate: int, desired_samples: int):
        digest = hashlib.sha1(json.dumps([sample_rate, desired_samples]).encode())
        for path in paths:
            try:
                stat = os.stat(path)
                digest.update(json.dumps([os.path.abspath(path), stat.st_size,
                                          stat.st_mtime_ns]).encode())
            except OSError:
                digest.update(json.dumps([os.path.abspath(path), None]).encode())
        self.cache_dir = cache_dir
        self.folder = os.path.join(cache_dir, digest.hexdigest())
        self.count = len(paths)

    def load(self) -> Optional[Tuple[np.ndarray, List[int], List[str]]]:
        """The cached (audio, kept, errors), or None when there is no usable entry."""
        try:
            with open(os.path.join(self.folder, "index.json")) as handle:
                index = json.load(handle)
            audio = np.load(os.path.join(self.folder, "audio.npy"), mmap_mode="r")  # rows read on use
        except (OSError, ValueError):
            return None
        if index.get("count") != self.count or len(audio) != len(index["kept"]):
            return None
        return audio, list(index["kept"]), list(index["errors"])

    def save(self, audio: np.ndarray, kept: List[int], errors: List[str]) -> None:
        """Writes the entry atomically; a cache that cannot be written is only a warning."""
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            staging = tempfile.mkdtemp(dir=self.cache_dir, prefix=".partial-")
            np.save(os.path.join(staging, "audio.npy"), audio)
            with open(os.path.join(staging, "index.json"), "w") as handle:
                json.dump({"count": self.count, "kept": kept, "errors": errors}, handle)
            try:
                os.replace(staging, self.folder)
            except OSError:  # another run wrote the same entry first
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as error:
            print(f"warning: could not write --audio_cache_dir {self.cache_dir}: {error}",
                  file=sys.stderr)


def report_unreadable(errors: Sequence[str]) -> None:
    """Warns about files that were skipped."""
    for line in errors[:20]:
        print(f"warning: skipped {line}", file=sys.stderr)
    if len(errors) > 20:
        print(f"warning: skipped {len(errors) - 20} more unreadable files", file=sys.stderr)


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


def load_background_noise(folders: Sequence[str], sample_rate: int) -> List[np.ndarray]:
    """The long noise recordings in folders (every audio format), as float32 arrays in [-1, 1]."""
    noises = []
    for path in [path for folder in folders for path in audio_files(folder)]:
        try:
            audio = read_audio(path, sample_rate)
        except ValueError as error:
            report_unreadable([str(error)])
            continue
        if audio.size:
            noises.append(audio.astype(np.float32) / 32768.0)
    return noises


class AudioProcessor:
    """Indexes a Speech Commands folder, splits it, and serves fingerprints.

    Validation and test fingerprints are deterministic: they are computed once
    and kept (with validation_dir, "validation" is that real folder's). Training
    batches are augmented (time shift, background noise, and what augmentation
    turns on) and fingerprinted on the fly by a tf.data pipeline, SpecAugment
    masks last; every batch is a pure function of (seed, step).
    """

    def __init__(self, data_dir: str, wanted_words: Sequence[str], model_settings: ModelSettings,
                 validation_percentage: float = 10, testing_percentage: float = 10,
                 silence_percentage: float = 10, unknown_percentage: float = 10,
                 time_shift_ms: float = 100, background_frequency: float = 0.8,
                 background_volume: float = 0.1, seed: int = RANDOM_SEED,
                 augmentation: Optional[Augmentation] = None,
                 extra_unknown_dirs: Sequence[str] = (), validation_dir: Optional[str] = None,
                 background_noise_dir: Optional[str] = None,
                 audio_cache_dir: Optional[str] = None):
        if seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {seed}")
        self.data_dir = data_dir
        self.data_dirs = data_dirs_from_flag(data_dir)
        self.audio_cache_dir = audio_cache_dir
        self.model_settings = model_settings
        self.words_list = prepare_words_list(wanted_words)
        self.time_shift_samples = int(time_shift_ms * model_settings.sample_rate / 1000)
        self.background_frequency = background_frequency
        self.background_volume = background_volume
        self.seed = seed
        self.augmentation = augmentation or Augmentation()
        self._reverb_spectra: Optional[np.ndarray] = None
        self.extra_unknown_dirs = [d for d in extra_unknown_dirs if d]
        for folder in self.extra_unknown_dirs:
            if not os.path.isdir(folder):
                raise UsageError(f"--extra_unknown_dirs {folder} is not a folder")
        self.silence_percentage = silence_percentage
        self.fingerprinter = Fingerprinter(model_settings)
        self.data_index = self._prepare_data_index(wanted_words, validation_percentage,
                                                   testing_percentage, silence_percentage,
                                                   unknown_percentage)
        self._load_audio()
        noise_folders = [os.path.join(folder, BACKGROUND_NOISE_DIR_NAME) for folder in self.data_dirs]
        if background_noise_dir:
            if not audio_files(background_noise_dir):
                raise UsageError(f"--background_noise_dir {background_noise_dir} holds no audio files "
                                 f"(expected {' '.join(AUDIO_EXTENSIONS)})")
            noise_folders.append(background_noise_dir)
        self.background_data = load_background_noise(noise_folders, model_settings.sample_rate)
        if not self.background_data:
            print(f"No {BACKGROUND_NOISE_DIR_NAME} folder with audio in {data_dir} and no "
                  f"--background_noise_dir: training without background noise")
        self._fingerprint_cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.validation_dir = validation_dir
        if validation_dir:
            self._validation_clips = self._load_validation_folder(validation_dir)

    @classmethod
    def from_flags(cls, args: argparse.Namespace, model_settings: ModelSettings) -> "AudioProcessor":
        """Builds the processor from the data flags, downloading the data set if needed."""
        maybe_download_and_extract_dataset(args.data_url, data_dirs_from_flag(args.data_dir)[0])
        return cls(args.data_dir, wanted_words_from_flags(args), model_settings,
                   args.validation_percentage, args.testing_percentage, args.silence_percentage,
                   args.unknown_percentage, args.time_shift_ms, args.background_frequency,
                   args.background_volume, args.seed, Augmentation.from_flags(args),
                   getattr(args, "extra_unknown_dirs", ()), getattr(args, "validation_dir", None),
                   getattr(args, "background_noise_dir", None), getattr(args, "audio_cache_dir", None))

    def _prepare_data_index(self, wanted_words: Sequence[str], validation_percentage: float,
                            testing_percentage: float, silence_percentage: float,
                            unknown_percentage: float) -> Dict[str, List[Tuple[str, int]]]:
        """Splits the files into partitions of (path, label index); silence has path ''."""
        if validation_percentage + testing_percentage >= 100:
            raise UsageError("--validation_percentage plus --testing_percentage must be below 100")
        rng = np.random.default_rng(self.seed)
        wanted_index = {word: i + 2 for i, word in enumerate(wanted_words)}
        data_index: Dict[str, List[Tuple[str, int]]] = {name: [] for name in PARTITIONS}
        unknown_index: Dict[str, List[Tuple[str, int]]] = {name: [] for name in PARTITIONS}
        all_words = set()
        for folder in self.data_dirs:
            if not os.path.isdir(folder):
                raise UsageError(f"--data_dir {folder} is not a folder")
        for path in [path for folder in self.data_dirs for path in word_folder_files(folder)]:
            word = os.path.basename(os.path.dirname(path)).lower()
            if word == BACKGROUND_NOISE_DIR_NAME:
                continue
            all_words.add(word)
            partition = which_set(path, validation_percentage, testing_percentage)
            if word in wanted_index:
                data_index[partition].append((path, wanted_index[word]))
            else:
                unknown_index[partition].append((path, UNKNOWN_WORD_INDEX))
        if not all_words:
            found = sorted(entry for folder in self.data_dirs for entry in os.listdir(folder))[:10]
            raise UsageError(f"no audio files in word folders of --data_dir {self.data_dir} "
                             f"(expected <data_dir>/<word>/<clip> in {' '.join(AUDIO_EXTENSIONS)}; "
                             f"found: {', '.join(found) or 'nothing'})")
        for folder in self.extra_unknown_dirs:
            for path in word_folder_files(folder):
                word = os.path.basename(os.path.dirname(path)).lower()
                if word in wanted_index or word.startswith("_"):
                    continue  # keywords, _silence_, _unknown_, noise: not unknown-word material
                partition = which_set(path, validation_percentage, testing_percentage)
                unknown_index[partition].append((path, UNKNOWN_WORD_INDEX))
        missing = [word for word in wanted_words if word not in all_words]
        if missing:
            raise UsageError(f"--wanted_words {', '.join(missing)} not found in --data_dir "
                             f"{self.data_dir}; it has: {', '.join(sorted(all_words))}")
        for partition in PARTITIONS:
            set_size = len(data_index[partition])
            silence_size = int(math.ceil(set_size * silence_percentage / 100))
            data_index[partition].extend([("", SILENCE_INDEX)] * silence_size)
            unknowns = unknown_index[partition]
            order = rng.permutation(len(unknowns))
            unknown_size = int(math.ceil(set_size * unknown_percentage / 100))
            data_index[partition].extend(unknowns[i] for i in order[:unknown_size])
            data_index[partition] = [data_index[partition][i]
                                     for i in rng.permutation(len(data_index[partition]))]
        return data_index

    def _load_audio(self) -> None:
        """Reads every clip into memory (int16), dropping unreadable files from the index.

        Per partition, `audio` holds each distinct clip once plus one all-zero
        clip for silence, and `rows` maps every sample to its clip.
        """
        settings = self.model_settings
        self.audio: Dict[str, np.ndarray] = {}
        self.rows: Dict[str, np.ndarray] = {}
        self.labels: Dict[str, np.ndarray] = {}
        all_errors: List[str] = []
        for partition in PARTITIONS:
            paths = sorted({path for path, _ in self.data_index[partition] if path})
            clips, kept, errors = load_clips(paths, settings.sample_rate, settings.desired_samples,
                                             self.audio_cache_dir)
            all_errors.extend(errors)
            row_of = {paths[i]: row for row, i in enumerate(kept)}
            row_of[""] = len(kept)
            entries = [entry for entry in self.data_index[partition] if entry[0] in row_of]
            self.data_index[partition] = entries
            self.audio[partition] = np.concatenate(
                [clips, np.zeros((1, settings.desired_samples), dtype=np.int16)])
            self.rows[partition] = np.array([row_of[path] for path, _ in entries], dtype=np.int64)
            self.labels[partition] = np.array([label for _, label in entries], dtype=np.int32)
        report_unreadable(all_errors)

    def set_size(self, partition: str) -> int:
        """How many samples (silence and unknown included) a partition has."""
        return len(self.data_index[partition])

    def fingerprints(self, partition: str) -> Tuple[np.ndarray, np.ndarray]:
        """Deterministic fingerprints and labels of a partition (no augmentation), computed once.

        Silence samples are background noise at a seeded random volume, as in
        training and as the `_silence_` clips of the canonical test set are
        (zeros without noise recordings).
        """
        if partition == "validation" and self.validation_dir:
            return self._validation_fingerprints()
        if partition not in self._fingerprint_cache:
            fingerprints = self.fingerprinter.numpy(self.audio[partition])[self.rows[partition]]
            silence = np.flatnonzero(self.labels[partition] == SILENCE_INDEX)
            if len(silence) and self.background_data:
                rng = np.random.default_rng([self.seed, PARTITIONS.index(partition)])
                fingerprints[silence] = self.fingerprinter.numpy(self.silence_clips(len(silence), rng))
            self._fingerprint_cache[partition] = (fingerprints, self.labels[partition])
        return self._fingerprint_cache[partition]

    def _load_validation_folder(self, folder: str) -> Tuple[np.ndarray, np.ndarray]:
        """--validation_dir's clips and labels: keywords, unknown (capped), noise silence."""
        clips, labels, _ = load_evaluation_folder(folder, self.words_list, self.model_settings,
                                                  others_as_unknown=True, cache_dir=self.audio_cache_dir)
        rng = np.random.default_rng([self.seed, 3 << 20])
        keywords = np.flatnonzero(labels > UNKNOWN_WORD_INDEX)
        unknown = np.flatnonzero(labels == UNKNOWN_WORD_INDEX)
        silence = np.flatnonzero(labels == SILENCE_INDEX)
        cap = int(math.ceil(len(keywords) * VALIDATION_UNKNOWN_RATIO)) if len(keywords) else len(unknown)
        unknown = np.sort(rng.permutation(unknown)[:cap])
        keep = np.concatenate([keywords, unknown, silence])
        clips, labels = clips[keep], labels[keep]
        if not len(silence) and self.background_data:
            count = int(math.ceil(len(keywords) * self.silence_percentage / 100))
            clips = np.concatenate([clips, self.silence_clips(count, rng)])
            labels = np.concatenate([labels, np.full(count, SILENCE_INDEX, dtype=np.int32)])
        print(f"Model selection on --validation_dir {folder}: "
              + ", ".join(f"{word} {int(np.sum(labels == i))}" for i, word in enumerate(self.words_list)))
        return clips, labels

    def _validation_fingerprints(self) -> Tuple[np.ndarray, np.ndarray]:
        if "validation_dir" not in self._fingerprint_cache:
            clips, labels = self._validation_clips
            self._fingerprint_cache["validation_dir"] = (self.fingerprinter.numpy(clips), labels)
        return self._fingerprint_cache["validation_dir"]

    def silence_clips(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """count int16 clips of background noise, each at a random volume in [0, 1)."""
        samples = self.model_settings.desired_samples
        clips = np.zeros((count, samples), dtype=np.float32)
        self._add_background(clips, rng.uniform(0, 1, count), rng)
        return np.round(clips * 32767).astype(np.int16)

    def _add_background(self, audio: np.ndarray, volumes: np.ndarray, rng: np.random.Generator) -> None:
        """Mixes a random stretch of a random noise recording into each clip, in place, clipped to [-1, 1]."""
        rows, segments = self._noise_segments(audio.shape, volumes > 0, rng)
        for i, segment in zip(rows, segments):
            audio[i] += volumes[i] * segment
        np.clip(audio, -1.0, 1.0, out=audio)

    def _noise_segments(self, shape: Tuple[int, int], active: np.ndarray, rng: np.random.Generator
                        ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """A random stretch of a random noise recording for each active row: (rows, stretches)."""
        count, samples = shape
        noise_choice = rng.integers(0, len(self.background_data), size=count)
        rows = np.flatnonzero(active)
        segments = []
        for i in rows:
            noise = self.background_data[noise_choice[i]]
            if len(noise) < samples:
                noise = np.resize(noise, samples)
            start = rng.integers(0, len(noise) - samples + 1)
            segments.append(noise[start:start + samples])
        return rows, segments

    def _add_background_at_snr(self, audio: np.ndarray, use_background: np.ndarray,
                               silence_volumes: np.ndarray, is_silence: np.ndarray,
                               rng: np.random.Generator) -> None:
        """Noise at a random SNR for speech samples, at silence_volumes for silence; in place."""
        low, high = self.augmentation.background_snr_db
        snr_db = rng.uniform(low, high, size=len(audio))
        speech_power = active_power(audio)
        rows, segments = self._noise_segments(audio.shape, use_background | is_silence, rng)
        for i, segment in zip(rows, segments):
            if is_silence[i]:
                audio[i] += silence_volumes[i] * segment
                continue
            noise_power = float(np.mean(np.square(segment, dtype=np.float64)))
            if noise_power > 0 and speech_power[i] > 0:
                audio[i] += np.float32(math.sqrt(speech_power[i] / noise_power) *
                                       10 ** (-snr_db[i] / 20)) * segment
        np.clip(audio, -1.0, 1.0, out=audio)

    def _reverb_bank(self) -> np.ndarray:
        """REVERB_BANK_SIZE room responses (rfft spectra), fixed by the seed, made once."""
        if self._reverb_spectra is None:
            import scipy.fft
            settings = self.model_settings
            rng = np.random.default_rng([self.seed, 4 << 20])
            responses = room_impulse_responses(REVERB_BANK_SIZE, settings.sample_rate, rng)
            size = reverb_size(settings.desired_samples, settings.sample_rate)
            self._reverb_spectra = scipy.fft.rfft(responses, size).astype(np.complex64)
            self._reverb_fft_size = size
        return self._reverb_spectra

    def _perturb_speech(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gain, speed/pitch, colouring and reverberation of the clips, as --gain_db,
        --resample, --eq_db and --reverb_probability say; draws nothing when they are off."""
        augmentation = self.augmentation
        batch = len(audio)
        if augmentation.gain_db > 0:
            gains = 10 ** (rng.uniform(-augmentation.gain_db, augmentation.gain_db, batch) / 20)
            audio = audio * gains[:, None].astype(np.float32)
        if augmentation.resample > 0:
            factors = rng.uniform(1 - augmentation.resample, 1 + augmentation.resample, batch)
            audio = resample_clips(audio, factors)
        if augmentation.eq_db > 0:
            size = 2 * audio.shape[1]
            gains = equalizer_gains(batch, size, self.model_settings.sample_rate,
                                    augmentation.eq_db, rng)
            audio = filter_clips(audio, gains, size)
        if augmentation.reverb_probability > 0:
            rows = np.flatnonzero(rng.random(batch) < augmentation.reverb_probability)
            if len(rows):
                bank = self._reverb_bank()
                choice = rng.integers(0, len(bank), size=len(rows))
                audio = audio.copy()
                audio[rows] = reverberate(audio[rows], bank[choice], self._reverb_fft_size)
        return audio

    def training_batches(self, batch_size: int, start_step: int = 0
                         ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Augmented training audio, one batch per step, from start_step on.

        Step s's batch depends only on (seed, s): a resumed run sees exactly the
        batches an uninterrupted one would have.
        """
        if len(self.rows["training"]) == 0:  # checked here, not at the first next()
            raise UsageError(f"no training samples in --data_dir {self.data_dir} (every clip fell "
                             f"in the validation or testing partition, or was unreadable)")
        return self._training_batches(batch_size, start_step)

    def _training_batches(self, batch_size: int, start_step: int
                          ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        rows = self.rows["training"]
        labels = self.labels["training"]
        count = len(rows)
        step = start_step
        epoch, order = -1, None
        while True:
            positions = np.arange(step * batch_size, (step + 1) * batch_size)
            batch_rows = np.empty(batch_size, dtype=np.int64)
            for epoch_of_batch in np.unique(positions // count):
                if epoch_of_batch != epoch:
                    epoch = int(epoch_of_batch)
                    order = np.random.default_rng([self.seed, epoch]).permutation(count)
                mask = positions // count == epoch_of_batch
                batch_rows[mask] = order[positions[mask] % count]
            rng = np.random.default_rng([self.seed, 1 << 20, step])
            yield self.augment(self.audio["training"][rows[batch_rows]], labels[batch_rows], rng), \
                labels[batch_rows]
            step += 1

    def augment(self, clips: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Time shift and background noise, as in TensorFlow's speech_commands example,
        plus the optional --gain_db, --resample, --eq_db and --reverb_probability.

        A sample gets noise with probability background_frequency, at a volume
        uniform in [0, background_volume) -- or, with --background_snr_db, at a
        signal-to-noise ratio uniform in that range; a silence sample always
        gets noise when there is any, at a volume uniform in [0, 1). With the
        new augmentations off, the random draws (and so the stream) are the
        ones of earlier versions.
        """
        audio = clips.astype(np.float32) / 32768.0
        batch, samples = audio.shape
        shift = self.time_shift_samples
        offsets = rng.integers(-shift, shift + 1, size=batch) if shift > 0 else None
        audio = self._perturb_speech(audio, rng)
        if shift > 0:
            shifted = np.zeros_like(audio)
            for i, offset in enumerate(offsets):
                if offset > 0:
                    shifted[i, offset:] = audio[i, :samples - offset]
                elif offset < 0:
                    shifted[i, :samples + offset] = audio[i, -offset:]
                else:
                    shifted[i] = audio[i]
            audio = shifted
        if self.background_data:
            is_silence = labels == SILENCE_INDEX
            use_background = rng.random(batch) < self.background_frequency
            volumes = np.where(use_background, rng.uniform(0, self.background_volume, batch), 0.0)
            volumes = np.where(is_silence, rng.uniform(0, 1, batch), volumes)
            if self.augmentation.background_snr_db is not None:
                self._add_background_at_snr(audio, use_background, volumes, is_silence, rng)
            else:
                self._add_background(audio, volumes, rng)
        elif (self.augmentation.gain_db > 0 or self.augmentation.eq_db > 0
              or self.augmentation.reverb_probability > 0):
            np.clip(audio, -1.0, 1.0, out=audio)
        return audio

    def fingerprint_masks(self, batch_size: int, step: int) -> np.ndarray:
        """SpecAugment masks of step's batch: float32 [batch, frames, coefficients] of 0 and 1.

        A pure function of (seed, step), drawn apart from the audio augmentation.
        """
        settings = self.model_settings
        frames, coefficients = settings.spectrogram_length, settings.dct_coefficient_count
        augmentation = self.augmentation
        rng = np.random.default_rng([self.seed, 2 << 20, step])

        def bands(size: int, count: int, widest: int) -> np.ndarray:
            if count <= 0 or widest <= 0:
                return np.zeros((batch_size, size), dtype=bool)
            widths = rng.integers(0, min(widest, size) + 1, size=(batch_size, count))
            starts = (rng.random((batch_size, count)) * (size - widths + 1)).astype(np.int64)
            index = np.arange(size)[None, None, :]
            return np.any((index >= starts[..., None]) & (index < (starts + widths)[..., None]), axis=1)

        masked_time = bands(frames, augmentation.time_masks, augmentation.time_mask_max)
        masked_frequency = bands(coefficients, augmentation.frequency_masks,
                                 augmentation.frequency_mask_max)
        keep = ~masked_time[:, :, None] & ~masked_frequency[:, None, :]
        return keep.astype(np.float32)

    def training_dataset(self, batch_size: int, start_step: int = 0) -> tf.data.Dataset:
        """tf.data pipeline of (fingerprints [batch, fingerprint_size], labels [batch])."""
        samples = self.model_settings.desired_samples
        self.training_batches(batch_size, start_step)  # raises UsageError now if there is no data
        if not self.augmentation.masks:
            dataset = tf.data.Dataset.from_generator(
                lambda: self.training_batches(batch_size, start_step),
                output_signature=(tf.TensorSpec([batch_size, samples], tf.float32),
                                  tf.TensorSpec([batch_size], tf.int32)))
            dataset = dataset.map(lambda audio, labels: (self.fingerprinter(audio), labels),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return dataset.prefetch(tf.data.AUTOTUNE)
        settings = self.model_settings
        mask_shape = [batch_size, settings.spectrogram_length, settings.dct_coefficient_count]

        def with_masks():
            for step, (audio, labels) in enumerate(self.training_batches(batch_size, start_step),
                                                   start_step):
                yield audio, self.fingerprint_masks(batch_size, step), labels

        dataset = tf.data.Dataset.from_generator(
            with_masks, output_signature=(tf.TensorSpec([batch_size, samples], tf.float32),
                                          tf.TensorSpec(mask_shape, tf.float32),
                                          tf.TensorSpec([batch_size], tf.int32)))
        dataset = dataset.map(
            lambda audio, masks, labels: (self.fingerprinter(audio) *
                                          tf.reshape(masks, [batch_size, -1]), labels),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)


def load_evaluation_folder(test_dir: str, words_list: Sequence[str], model_settings: ModelSettings,
                           others_as_unknown: bool = False, cache_dir: Optional[str] = None
                           ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Reads an evaluation folder: one sub-folder per label, every clip labelled by its folder.

    Returns int16 clips [n, desired_samples], label indices into words_list,
    and the paths, in sorted order. No split, no augmentation.
    """
    if not os.path.isdir(test_dir):
        raise UsageError(f"--test_dir {test_dir} is not a folder")
    label_of = {word: i for i, word in enumerate(words_list)}
    folders = sorted(entry for entry in os.listdir(test_dir)
                     if os.path.isdir(os.path.join(test_dir, entry)) and entry != BACKGROUND_NOISE_DIR_NAME)
    unknown_folders = [folder for folder in folders if folder.lower() not in label_of]
    if others_as_unknown:
        for folder in unknown_folders:
            label_of[folder.lower()] = UNKNOWN_WORD_INDEX
        unknown_folders = []
    if unknown_folders:
        raise UsageError(f"--test_dir {test_dir} has folders that are not labels of the model "
                         f"({', '.join(unknown_folders)}); the labels are {', '.join(words_list)}")
    paths, labels = [], []
    for folder in folders:
        for path in audio_files(os.path.join(test_dir, folder)):
            paths.append(path)
            labels.append(label_of[folder.lower()])
    if not paths:
        raise UsageError(f"--test_dir {test_dir} holds no audio files in label folders "
                         f"(expected <test_dir>/<label>/<clip> in {' '.join(AUDIO_EXTENSIONS)})")
    clips, kept, errors = load_clips(paths, model_settings.sample_rate, model_settings.desired_samples,
                                     cache_dir)
    report_unreadable(errors)
    return clips, np.array([labels[i] for i in kept], dtype=np.int32), [paths[i] for i in kept]
