"""Speech Commands data: download, split, load, augment and fingerprint.

The fingerprint of a clip is the MFCC that TensorFlow's `audio_spectrogram`
(magnitude squared) and `mfcc` ops compute, flattened time-major; Arm's
published "Hello Edge" models were trained on exactly these features. Here
they are computed in batches with tf.signal and two constant matrices that
reproduce the ops' mel filterbank and DCT (tests/test_input_data.py compares
the two), several times faster than the per-clip ops.
"""
import argparse
import glob
import hashlib
import math
import os
import re
import sys
import tarfile
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
                       help="Where the speech training data is (or is downloaded to).")
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
    audio = _read_pcm16(path, sample_rate)
    if audio is None:
        audio = _read_any(path, sample_rate)
    if audio.size == 0:
        raise ValueError(f"{path}: no audio samples")
    if audio.size < desired_samples:
        audio = np.pad(audio, (0, desired_samples - audio.size))
    return audio[:desired_samples]


def _read_pcm16(path: str, sample_rate: int) -> Optional[np.ndarray]:
    """Fast path: 16-bit mono PCM WAV at sample_rate, else None."""
    try:
        with wave.open(path, "rb") as wav:
            if (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) != (2, 1, sample_rate):
                return None
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    except OSError as error:
        raise ValueError(f"{path}: {error}")
    # A truncated file can end in half a sample: keep the whole samples.
    return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.int16)


def _read_any(path: str, sample_rate: int) -> np.ndarray:
    """Slow path: any format soundfile/audioread read, converted to int16 mono at sample_rate.

    These are the two readers librosa.load tries, called directly: importing
    librosa itself takes seconds.
    """
    import soundfile

    try:
        audio, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except Exception as sf_error:  # noqa: BLE001  (soundfile raises several types)
        try:
            audio, file_rate = _read_audioread(path)
        except Exception as error:  # noqa: BLE001  (audioread too)
            raise ValueError(f"{path}: unreadable audio ({str(sf_error) or repr(error)})")
    if audio.size and file_rate != sample_rate:
        audio = _resample(audio, int(file_rate), sample_rate)
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _read_audioread(path: str) -> Tuple[np.ndarray, int]:
    """Decodes with audioread (ffmpeg, GStreamer, ... where installed) to float32 mono."""
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


def load_clips(paths: Sequence[str], sample_rate: int, desired_samples: int
               ) -> Tuple[np.ndarray, List[int], List[str]]:
    """Reads many files in parallel.

    Returns the clips as an int16 array [n, desired_samples] for the files that
    could be read, their positions in paths, and one error line per file that
    could not.
    """
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
        self._mel = tf.constant(mel_weight_matrix(model_settings))
        self._dct = tf.constant(dct_matrix(model_settings.dct_coefficient_count))
        # One traced function for all numpy() calls (a new one per call retraced every time).
        self._compute = tf.function(lambda audio: self(tf.cast(audio, tf.float32) / 32768.0),
                                    reduce_retracing=True)

    def __call__(self, audio: tf.Tensor) -> tf.Tensor:
        """audio: float32 [batch, desired_samples] in [-1, 1] -> [batch, fingerprint_size]."""
        settings = self.model_settings
        frames = tf.signal.frame(audio, settings.window_size_samples, settings.window_stride_samples)
        spectrum = tf.signal.rfft(frames * self._window, [settings.fft_length])
        power = tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))
        mel = tf.linalg.matmul(tf.math.sqrt(power), self._mel)
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


def load_background_noise(data_dir: str, sample_rate: int) -> List[np.ndarray]:
    """The long noise recordings of `_background_noise_/`, as float32 arrays in [-1, 1]."""
    paths = sorted(glob.glob(os.path.join(data_dir, BACKGROUND_NOISE_DIR_NAME, "*.wav")))
    noises = []
    for path in paths:
        try:
            audio = _read_pcm16(path, sample_rate)
            if audio is None:
                audio = _read_any(path, sample_rate)
        except ValueError as error:
            report_unreadable([str(error)])
            continue
        if audio.size:
            noises.append(audio.astype(np.float32) / 32768.0)
    return noises


class AudioProcessor:
    """Indexes a Speech Commands folder, splits it, and serves fingerprints.

    Validation and test fingerprints are deterministic: they are computed once
    and kept. Training batches are augmented (time shift, background noise) and
    fingerprinted on the fly by a tf.data pipeline.
    """

    def __init__(self, data_dir: str, wanted_words: Sequence[str], model_settings: ModelSettings,
                 validation_percentage: float = 10, testing_percentage: float = 10,
                 silence_percentage: float = 10, unknown_percentage: float = 10,
                 time_shift_ms: float = 100, background_frequency: float = 0.8,
                 background_volume: float = 0.1, seed: int = RANDOM_SEED):
        if seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {seed}")
        self.data_dir = data_dir
        self.model_settings = model_settings
        self.words_list = prepare_words_list(wanted_words)
        self.time_shift_samples = int(time_shift_ms * model_settings.sample_rate / 1000)
        self.background_frequency = background_frequency
        self.background_volume = background_volume
        self.seed = seed
        self.fingerprinter = Fingerprinter(model_settings)
        self.data_index = self._prepare_data_index(wanted_words, validation_percentage,
                                                   testing_percentage, silence_percentage,
                                                   unknown_percentage)
        self._load_audio()
        self.background_data = load_background_noise(data_dir, model_settings.sample_rate)
        if not self.background_data:
            print(f"No {BACKGROUND_NOISE_DIR_NAME} folder with audio in {data_dir}: "
                  f"training without background noise")
        self._fingerprint_cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_flags(cls, args: argparse.Namespace, model_settings: ModelSettings) -> "AudioProcessor":
        """Builds the processor from the data flags, downloading the data set if needed."""
        maybe_download_and_extract_dataset(args.data_url, args.data_dir)
        return cls(args.data_dir, wanted_words_from_flags(args), model_settings,
                   args.validation_percentage, args.testing_percentage, args.silence_percentage,
                   args.unknown_percentage, args.time_shift_ms, args.background_frequency,
                   args.background_volume, args.seed)

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
        for path in sorted(glob.glob(os.path.join(self.data_dir, "*", "*.wav"))):
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
            found = sorted(os.listdir(self.data_dir))[:10] if os.path.isdir(self.data_dir) else []
            raise UsageError(f"no .wav files in word folders of --data_dir {self.data_dir} "
                             f"(expected <data_dir>/<word>/*.wav; found: {', '.join(found) or 'nothing'})")
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
            clips, kept, errors = load_clips(paths, settings.sample_rate, settings.desired_samples)
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
        if partition not in self._fingerprint_cache:
            fingerprints = self.fingerprinter.numpy(self.audio[partition])[self.rows[partition]]
            silence = np.flatnonzero(self.labels[partition] == SILENCE_INDEX)
            if len(silence) and self.background_data:
                rng = np.random.default_rng([self.seed, PARTITIONS.index(partition)])
                fingerprints[silence] = self.fingerprinter.numpy(self.silence_clips(len(silence), rng))
            self._fingerprint_cache[partition] = (fingerprints, self.labels[partition])
        return self._fingerprint_cache[partition]

    def silence_clips(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """count int16 clips of background noise, each at a random volume in [0, 1)."""
        samples = self.model_settings.desired_samples
        clips = np.zeros((count, samples), dtype=np.float32)
        self._add_background(clips, rng.uniform(0, 1, count), rng)
        return np.round(clips * 32767).astype(np.int16)

    def _add_background(self, audio: np.ndarray, volumes: np.ndarray, rng: np.random.Generator) -> None:
        """Mixes a random stretch of a random noise recording into each clip, in place, clipped to [-1, 1]."""
        samples = audio.shape[1]
        noise_choice = rng.integers(0, len(self.background_data), size=len(audio))
        for i in np.flatnonzero(volumes > 0):
            noise = self.background_data[noise_choice[i]]
            if len(noise) < samples:
                noise = np.resize(noise, samples)
            start = rng.integers(0, len(noise) - samples + 1)
            audio[i] += volumes[i] * noise[start:start + samples]
        np.clip(audio, -1.0, 1.0, out=audio)

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
        """Time shift and background noise, as in TensorFlow's speech_commands example.

        A sample gets noise with probability background_frequency, at a volume
        uniform in [0, background_volume); a silence sample always gets noise
        when there is any, at a volume uniform in [0, 1).
        """
        audio = clips.astype(np.float32) / 32768.0
        batch, samples = audio.shape
        shift = self.time_shift_samples
        if shift > 0:
            offsets = rng.integers(-shift, shift + 1, size=batch)
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
            self._add_background(audio, volumes, rng)
        return audio

    def training_dataset(self, batch_size: int, start_step: int = 0) -> tf.data.Dataset:
        """tf.data pipeline of (fingerprints [batch, fingerprint_size], labels [batch])."""
        samples = self.model_settings.desired_samples
        self.training_batches(batch_size, start_step)  # raises UsageError now if there is no data
        dataset = tf.data.Dataset.from_generator(
            lambda: self.training_batches(batch_size, start_step),
            output_signature=(tf.TensorSpec([batch_size, samples], tf.float32),
                              tf.TensorSpec([batch_size], tf.int32)))
        dataset = dataset.map(lambda audio, labels: (self.fingerprinter(audio), labels),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)


def load_evaluation_folder(test_dir: str, words_list: Sequence[str], model_settings: ModelSettings
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
    if unknown_folders:
        raise UsageError(f"--test_dir {test_dir} has folders that are not labels of the model "
                         f"({', '.join(unknown_folders)}); the labels are {', '.join(words_list)}")
    paths, labels = [], []
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(test_dir, folder, "*.wav"))):
            paths.append(path)
            labels.append(label_of[folder.lower()])
    if not paths:
        raise UsageError(f"--test_dir {test_dir} holds no .wav files in label folders "
                         f"(expected <test_dir>/<label>/*.wav)")
    clips, kept, errors = load_clips(paths, model_settings.sample_rate, model_settings.desired_samples)
    report_unreadable(errors)
    return clips, np.array([labels[i] for i in kept], dtype=np.int32), [paths[i] for i in kept]
