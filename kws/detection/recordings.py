"""Long recordings: reading them, and the streaming test recording with its ground truth.

The test recording follows TensorFlow's generate_streaming_test_wav.py: background
noise in overlapping one-clip segments at a random volume each (silence without
noise recordings), and one word per clip + --word_gap_ms, at a random time in its
slot (whole milliseconds) and a random level: a keyword, or with
--unknown_percentage an unknown word. The words come from an evaluation folder
(--test_dir: one folder per label; folders that are not keywords are unknown
words, _silence_ is left out) or from a partition of --data_dir. Everything
random follows --seed.

The ground truth has one `label,time_ms` line per keyword (TensorFlow's format):
the keyword's clip starts time_ms into the recording. Unknown words have no line.
"""
import argparse
import dataclasses
import io
import os
import wave
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from kws import cli, vocabulary
from kws.cli import UsageError
from kws.data import audio_io, data_split, dataset, speech_commands

BACKGROUND_CROSSOVER_MS = 500  # noise segments overlap by this much
WORD_RAMP_S = 500 / 16000  # TensorFlow's 500-sample fade in and out of each word
NOT_WORDS = (speech_commands.BACKGROUND_NOISE_DIR_NAME, vocabulary.SILENCE_LABEL)  # --data_dir folders


class Keyword(NamedTuple):
    """A ground-truth keyword: its label and the start of its clip in the recording."""

    label: str
    time_ms: float


def read_recordings(paths: Sequence[str], sample_rate: int
                    ) -> Tuple[List[np.ndarray], List[int], List[str]]:
    """Whole files as int16 mono at sample_rate: the recordings that could be read, their
    positions in paths, and one error line per file that could not (or holds no samples)."""
    recordings, kept, errors = [], [], []
    for position, path in enumerate(paths):
        try:
            audio = audio_io.read_audio(path, sample_rate)
        except ValueError as error:
            errors.append(str(error))
            continue
        if not audio.size:
            errors.append(f"{path}: no audio samples")
            continue
        recordings.append(audio)
        kept.append(position)
    return recordings, kept, errors


def read_recording(path: str, sample_rate: int, flag: str = "--wav") -> np.ndarray:
    """One whole file as int16 mono at sample_rate; UsageError naming flag when unreadable."""
    recordings, _, errors = read_recordings([path], sample_rate)
    if errors:
        raise UsageError(f"{flag} {errors[0]}")
    return recordings[0]


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """int16 mono audio as a 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()


def write_ground_truth(path: str, keywords: Sequence[Keyword]) -> None:
    """One `label,time_ms` line per keyword, written atomically."""
    text = "".join(f"{keyword.label},{keyword.time_ms:g}\n" for keyword in keywords)
    cli.write_atomically(path, text.encode())


def read_ground_truth(path: str, flag: str = "--ground_truth") -> List[Keyword]:
    """The keywords of a `label,time_ms` file (spaces allowed, blank lines skipped), by time;
    _silence_ and _unknown_ lines (TensorFlow's generator writes them) are left out."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{flag} {path}: {getattr(error, 'strerror', None) or error}")
    keywords = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        try:
            if len(fields) != 2 or not fields[0]:
                raise ValueError
            keyword = Keyword(fields[0], float(fields[1]))
        except ValueError:
            raise UsageError(f"{flag} {path}: line {number} is not 'label,time_ms': {line[:80]!r}")
        if keyword.label not in (vocabulary.SILENCE_LABEL, vocabulary.UNKNOWN_WORD_LABEL):
            keywords.append(keyword)
    return sorted(keywords, key=lambda keyword: keyword.time_ms)


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """Where the words and the noise come from, how they are mixed, where the result goes."""
    source = parser.add_argument_group("words and noise")
    source.add_argument("--test_dir", default=None,
                        help="An evaluation folder: one folder per label; the folders of "
                             "--wanted_words give keywords, the others (_unknown_, other words) "
                             "unknown words; _silence_ is not used.")
    source.add_argument("--data_dir", default=None,
                        help="Instead of --test_dir: folders of <word>/<clip> (a comma list), "
                             "of which --partition is used.")
    source.add_argument("--partition", choices=speech_commands.PARTITIONS, default="testing",
                        help="The partition of --data_dir to take words from.")
    speech_commands.add_split_flags(source)
    vocabulary.add_label_flags(parser)
    source.add_argument("--background_noise_dir", default=None,
                        help="A folder of long noise recordings (e.g. _background_noise_); "
                             "without it the words are mixed into silence.")
    source.add_argument("--sample_rate", type=cli.positive_int, default=16000,
                        help="Sample rate of the recording.")
    source.add_argument("--clip_duration_ms", type=cli.positive_int, default=1000,
                        help="Length of each word clip.")
    mixing = parser.add_argument_group("mixing")
    mixing.add_argument("--duration_s", type=cli.positive_int, default=600,
                        help="Length of the recording in seconds.")
    mixing.add_argument("--word_gap_ms", type=cli.positive_int, default=2000,
                        help="Each word starts at a random time within this gap after the "
                             "previous word's slot.")
    mixing.add_argument("--unknown_percentage", type=cli.non_negative_float, default=30.0,
                        help="Percentage of the words that are unknown words.")
    mixing.add_argument("--background_volume", type=cli.fraction, default=0.1,
                        help="Each noise segment is mixed at a random volume from 0 to this.")
    mixing.add_argument("--word_gain_db", type=cli.comma_list(float), default=[-6.0, 0.0],
                        help="MIN,MAX: each word is mixed at a random gain in this range (dB).")
    mixing.add_argument("--seed", type=int, default=speech_commands.RANDOM_SEED,
                        help="Fixes every random choice: the same flags give the same files.")
    output = parser.add_argument_group("output")
    output.add_argument("--output_wav", default="/tmp/speech_commands_train/streaming_test.wav",
                        help="The recording to write (16-bit PCM WAV).")
    output.add_argument("--output_ground_truth",
                        default="/tmp/speech_commands_train/streaming_test_labels.txt",
                        help="The ground truth to write: one label,time_ms line per keyword.")


@dataclasses.dataclass(frozen=True)
class Mixing:
    """How the recording is made (the flags of the mixing group)."""

    sample_rate: int
    clip_duration_ms: int
    duration_s: int
    word_gap_ms: int
    unknown_percentage: float
    background_volume: float
    word_gain_db: Tuple[float, float]
    seed: int


def mixing_from_flags(args: argparse.Namespace) -> Mixing:
    """The mixing flags, checked."""
    gain = tuple(args.word_gain_db)
    if len(gain) != 2 or gain[0] > gain[1]:
        raise UsageError(f"--word_gain_db expects MIN,MAX with MIN <= MAX, got {args.word_gain_db}")
    if args.duration_s * 1000 < args.clip_duration_ms + args.word_gap_ms:
        raise UsageError(f"--duration_s {args.duration_s} is shorter than one word slot "
                         f"(--clip_duration_ms + --word_gap_ms)")
    return Mixing(args.sample_rate, args.clip_duration_ms, args.duration_s, args.word_gap_ms,
                  args.unknown_percentage, args.background_volume, gain, args.seed)


@dataclasses.dataclass
class Words:
    """int16 clips [n, clip samples] of each keyword (only those with clips) and of unknown words."""

    keywords: Dict[str, np.ndarray]
    unknown: np.ndarray


def _words(clips: np.ndarray, labels: Sequence[int], words_list: Sequence[str]) -> Words:
    labels = np.asarray(labels)
    keywords = {word: clips[labels == i] for i, word in enumerate(words_list)
                if i > vocabulary.UNKNOWN_WORD_INDEX and np.any(labels == i)}
    if not keywords:
        raise UsageError(f"no clip of the keywords ({', '.join(words_list[2:])}) was found: "
                         "check --test_dir or --data_dir and --wanted_words")
    return Words(keywords, clips[labels == vocabulary.UNKNOWN_WORD_INDEX])


def _partition_files(data_dir: str, partition: str, validation_percentage: float,
                     testing_percentage: float, words_list: Sequence[str]
                     ) -> Tuple[List[str], List[int]]:
    """The word files of partition of data_dir (--data_dir's folders, comma-separated) and their
    labels (other words _unknown_)."""
    paths, labels = [], []
    for folder in dataset.data_dirs_from_flag(data_dir):
        if not os.path.isdir(folder):
            raise UsageError(f"--data_dir {folder} is not a folder")
        for path in audio_io.word_folder_files(folder):
            word = os.path.basename(os.path.dirname(path)).lower()
            if (data_split.which_set(path, validation_percentage, testing_percentage) != partition
                    or word in NOT_WORDS):
                continue
            paths.append(path)
            labels.append(words_list.index(word) if word in words_list[2:]
                          else vocabulary.UNKNOWN_WORD_INDEX)
    return paths, labels


def words_from_flags(args: argparse.Namespace) -> Words:
    """The word clips of --test_dir, or of --partition of --data_dir, at --sample_rate and
    --clip_duration_ms."""
    words_list = vocabulary.words_list_from_flags(args)
    if bool(args.test_dir) == bool(args.data_dir):
        raise UsageError("give the words to mix: --test_dir or --data_dir (one of them)")
    if args.test_dir:
        paths, labels = speech_commands.evaluation_folder_files(args.test_dir, words_list,
                                                                others_as_unknown=True)
    else:
        paths, labels = _partition_files(args.data_dir, args.partition, args.validation_percentage,
                                         args.testing_percentage, words_list)
    clip_samples = int(args.sample_rate * args.clip_duration_ms / 1000)
    clips, kept, errors = audio_io.load_clips(paths, args.sample_rate, clip_samples)
    audio_io.report_unreadable(errors)
    return _words(clips, [labels[i] for i in kept], words_list)


def load_noise(folder: str, sample_rate: int) -> List[np.ndarray]:
    """The noise recordings of --background_noise_dir, float32 in [-1, 1]."""
    if not os.path.isdir(folder):
        raise UsageError(f"--background_noise_dir {folder} is not a folder")
    noises = audio_io.load_background_noise([folder], sample_rate)
    if not noises:
        raise UsageError(f"--background_noise_dir {folder} holds no readable audio file")
    return noises


def _envelope(length: int, ramp: int) -> np.ndarray:
    """1 with a linear fade of ramp samples in and out (TensorFlow's mix_in_audio_sample)."""
    edge = np.minimum(np.arange(length), length - np.arange(length)).astype(np.float32)
    return np.minimum(1.0, edge / ramp) if ramp > 0 else np.ones(length, dtype=np.float32)


def _mix(track: np.ndarray, offset: int, sound: np.ndarray, envelope: np.ndarray,
         volume: float) -> None:
    """Adds sound * envelope * volume to track at offset (cut at the track's end)."""
    length = min(len(sound), len(track) - offset)
    track[offset:offset + length] += sound[:length] * envelope[:length] * volume


def _mix_background(track: np.ndarray, noises: Sequence[np.ndarray], mixing: Mixing,
                    rng: np.random.Generator) -> None:
    """Noise segments one clip apart, each a clip + the crossover long, at random volumes."""
    stride = mixing.sample_rate * mixing.clip_duration_ms // 1000
    length = stride + mixing.sample_rate * BACKGROUND_CROSSOVER_MS // 1000
    envelope = _envelope(length, mixing.sample_rate * BACKGROUND_CROSSOVER_MS // 2000)
    for offset in range(0, len(track), stride):
        noise = noises[rng.integers(len(noises))]
        if len(noise) < length:
            noise = np.resize(noise, length)
        start = rng.integers(len(noise) - length + 1)
        _mix(track, offset, noise[start:start + length], envelope,
             rng.uniform(0, mixing.background_volume))


def generate(words: Words, noises: Sequence[np.ndarray], mixing: Mixing
             ) -> Tuple[np.ndarray, List[Keyword]]:
    """The int16 recording and its ground truth (the keywords, by time); words without keywords
    make a recording of unknown words alone."""
    rng = np.random.default_rng(mixing.seed)
    rate = mixing.sample_rate
    track = np.zeros(mixing.duration_s * rate, dtype=np.float32)
    if noises:
        _mix_background(track, noises, mixing, rng)
    envelope = _envelope(rate * mixing.clip_duration_ms // 1000, int(WORD_RAMP_S * rate))
    slot_ms = mixing.clip_duration_ms + mixing.word_gap_ms
    labels = list(words.keywords)
    truth = []
    for slot in range(mixing.duration_s * 1000 // slot_ms):
        time_ms = slot * slot_ms + int(rng.integers(mixing.word_gap_ms))
        unknown = (not labels or rng.random() * 100 < mixing.unknown_percentage) and \
            len(words.unknown) > 0
        label = labels[rng.integers(len(labels))] if labels else ""
        clips = words.unknown if unknown else words.keywords[label]
        clip = clips[rng.integers(len(clips))].astype(np.float32) / 32768.0
        gain = 10 ** (rng.uniform(*mixing.word_gain_db) / 20)
        _mix(track, time_ms * rate // 1000, clip, envelope, gain)
        if not unknown:
            truth.append(Keyword(label, time_ms))
    audio = np.clip(np.round(track * 32768.0), -32768, 32767).astype(np.int16)
    return audio, truth


def describe(truth: Sequence[Keyword], mixing: Mixing) -> str:
    """One line: how long the recording is, how many keywords of each label and unknown words."""
    slots = mixing.duration_s * 1000 // (mixing.clip_duration_ms + mixing.word_gap_ms)
    counts: Dict[str, int] = {}
    for keyword in truth:
        counts[keyword.label] = counts.get(keyword.label, 0) + 1
    return (f"{mixing.duration_s} s, {len(truth)} keywords ("
            + ", ".join(f"{label} {count}" for label, count in sorted(counts.items()))
            + f") and {slots - len(truth)} unknown words")
