"""The data of a wake-word detector: its examples, its negative stream and its threshold.

No TensorFlow here. The examples are clips with three labels, _silence_,
_unknown_ and the wake word (WAKE_WORD_INDEX), each clip augmented copies
times with RECIPE (kws/data/augmentation.py's transforms: time shift, noise of the
noise folder, resampling, reverberation, equalization, gain):
- the wake word: the synthesized clips (POSITIVE_COPIES each) and the user's
  recordings (recording_copies each: ten takes make RECORDING_EXAMPLES examples);
- _unknown_: real speech of other words (the training partition of --data_dir,
  without the wake word) and the synthesized near misses (NEAR_MISS_COPIES);
- _silence_: noise alone, SILENCE_SHARE of the other examples.
The training partition's speakers are split once more: STREAM_SPEAKER_PERCENT of
them (data_split.held_out_rank, a second hash of the speaker) are kept out of
the examples and make the negative stream, a recording of their words in noise
(test_recordings.generate) on which the threshold is chosen, so that the false-alarm
rate is measured on voices the detector did not learn from.
The head also learns hard negatives: every window of a mining stream (the examples'
speakers' clips that are no example, in noise, MINING_SEED_OFFSET: another stream than
the negative stream), as the detector slides over audio. A word cut by the window's
edges, or two words' halves, are what a detector trained on whole clips alone mistakes
for its word. They are _unknown_ and weigh together HARD_NEGATIVE_WEIGHT labels
(training_set).
"""
import argparse
import dataclasses
import os
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from kws import features
from kws.cli import UsageError
from kws.data import audio_io
from kws.data import augmentation as aug
from kws.data import data_split
from kws.detection import detector as detection
from kws.detection import recordings as test_recordings
from kws.runtime import metadata, tflite_model

SILENCE_INDEX, UNKNOWN_INDEX, WAKE_WORD_INDEX = 0, 1, 2
SAMPLE_RATE = 16000  # of the recordings read to check them, and of the bench's streams
STREAM_SPEAKER_PERCENT = 10
POSITIVE_COPIES = 4
RECORDING_EXAMPLES = 400  # the recordings' augmented copies together: at least this many
NEAR_MISS_COPIES = 2
SILENCE_SHARE = 0.1
RECIPE = aug.Augmentation(resample=0.1, reverb_probability=0.3, gain_db=6.0, eq_db=6.0)
TIME_SHIFT_MS = 100.0
MINING_SEED_OFFSET = 2  # the mining stream's seed is --seed + this (synthesis uses + 1)
HARD_NEGATIVE_WEIGHT = 1.0  # the mined windows together weigh this many labels' examples
CHUNK_CLIPS = 512  # clips augmented (and then fingerprinted) at once


def recording_copies(count: int) -> int:
    """Augmented copies of each of count recordings: RECORDING_EXAMPLES together, at least
    POSITIVE_COPIES each."""
    return max(POSITIVE_COPIES, -(-RECORDING_EXAMPLES // max(count, 1)))


def word_folders(data_dirs: Sequence[str]) -> Dict[str, List[str]]:
    """The clips of each word folder (lower case) of the data folders; noise left out."""
    words: Dict[str, List[str]] = {}
    for path in (path for folder in data_dirs for path in audio_io.word_folder_files(folder)):
        word = os.path.basename(os.path.dirname(path)).lower()
        if word != data_split.BACKGROUND_NOISE_DIR_NAME:
            words.setdefault(word, []).append(path)
    return words


def stream_speaker(path: str) -> bool:
    """Whether a clip's speaker is one of the negative stream's: held-out rank below
    STREAM_SPEAKER_PERCENT (a backbone trained with --held_out_speaker_percentage
    STREAM_SPEAKER_PERCENT never heard them)."""
    return data_split.held_out_rank(path) < STREAM_SPEAKER_PERCENT


def negative_paths(data_dirs: Sequence[str], wake_word: str, validation_percentage: float,
                   testing_percentage: float) -> Tuple[List[str], List[str]]:
    """(the examples', the negative stream's) clips of other words in the training partition."""
    for folder in data_dirs:
        if not os.path.isdir(folder):
            raise UsageError(f"--data_dir {folder} is not a folder")
    words = word_folders(data_dirs)
    excluded = [wake_word] if wake_word in words else []
    _, unknowns = data_split.scan(data_dirs, [], [], validation_percentage, testing_percentage,
                                  excluded)
    paths = [path for path, _ in unknowns["training"]]
    if not paths:
        raise UsageError(f"--data_dir {','.join(data_dirs)} has no clip of other words than "
                         f"{wake_word} in its training partition")
    return ([path for path in paths if not stream_speaker(path)],
            [path for path in paths if stream_speaker(path)])


def mining_paths(train_paths: Sequence[str], examples: Sequence[str]) -> List[str]:
    """The clips of the hard-negative mining stream: those of train_paths (the examples'
    speakers, no wake word, no negative-stream speaker) that are no example; all of them
    when every clip is one."""
    used = set(examples)
    return [path for path in train_paths if path not in used] or list(train_paths)


def sample(paths: Sequence[str], count: int, seed: int) -> List[str]:
    """At most count of paths, a seeded choice, in their order."""
    chosen = np.random.default_rng(seed).permutation(len(paths))[:count]
    return [paths[i] for i in sorted(chosen)]


def load(paths: Sequence[str], sample_rate: int, samples: int) -> np.ndarray:
    """int16 clips of paths; unreadable ones are said in one line each and left out."""
    clips, _, errors = audio_io.load_clips(list(paths), sample_rate, samples)
    audio_io.report_unreadable(errors)
    return clips


def fit_clip(audio: np.ndarray, samples: int) -> np.ndarray:
    """One clip of a recording: its loudest stretch of samples, or the whole, centred."""
    if len(audio) <= samples:
        clip = np.zeros(samples, np.int16)
        start = (samples - len(audio)) // 2
        clip[start:start + len(audio)] = audio
        return clip
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    start = int(np.argmax(energy[samples:] - energy[:-samples]))
    return audio[start:start + samples]


def read_recordings(folder: str, sample_rate: int, samples: int) -> np.ndarray:
    """--recordings: every audio file of the folder (and its sub-folders), each as one clip;
    UsageError for a missing or empty folder and for a file that is not audio."""
    if not os.path.isdir(folder):
        raise UsageError(f"--recordings {folder} is not a folder")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                   for name in names if not name.startswith("."))
    if not paths:
        raise UsageError(f"--recordings {folder} is empty: put recordings of the wake word in "
                         f"it ({' '.join(audio_io.AUDIO_EXTENSIONS)})")
    audio, _, errors = test_recordings.read_recordings(paths, sample_rate)
    if errors:
        raise UsageError(f"--recordings {errors[0]}")
    return np.stack([fit_clip(one, samples) for one in audio])


@dataclasses.dataclass
class Examples:
    """Source clips (int16), their labels, and how many augmented copies each makes."""

    clips: np.ndarray
    labels: np.ndarray
    copies: np.ndarray

    @classmethod
    def of(cls, parts: Sequence[Tuple[np.ndarray, int, int]], samples: int) -> "Examples":
        """From (clips, label, copies) parts, plus silence: SILENCE_SHARE of the others."""
        parts = [part for part in parts if len(part[0])]
        count = sum(len(clips) * copies for clips, _, copies in parts)
        silence = (np.zeros((1, samples), np.int16), SILENCE_INDEX,
                   max(1, int(count * SILENCE_SHARE)))
        parts = parts + [silence]
        return cls(np.concatenate([clips for clips, _, _ in parts]),
                   np.concatenate([np.full(len(clips), label, np.int32) for clips, label, _ in parts]),
                   np.concatenate([np.full(len(clips), copies, np.int64) for clips, _, copies in parts]))

    def __len__(self) -> int:
        return int(self.copies.sum())

    def counts(self) -> Dict[int, int]:
        """Augmented examples per label."""
        return {label: int(self.copies[self.labels == label].sum()) for label in np.unique(self.labels)}

    def chunks(self, noises: Sequence[np.ndarray], sample_rate: int, seed: int
               ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Every augmented copy, in a seeded order: (float32 clips in [-1, 1], labels), CHUNK_CLIPS
        at a time; the same for the same seed."""
        background = aug.BackgroundNoise(noises, aug.DEFAULT_BACKGROUND_FREQUENCY,
                                         aug.DEFAULT_BACKGROUND_VOLUME)
        shift = int(TIME_SHIFT_MS * sample_rate / 1000)
        transforms = aug.transforms(RECIPE, shift, background, sample_rate, seed)
        rows = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(self.clips)),
                                                                 self.copies))
        for start in range(0, len(rows), CHUNK_CLIPS):
            chosen = rows[start:start + CHUNK_CLIPS]
            labels = self.labels[chosen]
            rng = np.random.default_rng([seed, start])
            yield aug.apply(transforms, self.clips[chosen], labels == SILENCE_INDEX, rng), labels


def label_weights(labels: np.ndarray) -> np.ndarray:
    """Each example's weight: the inverse of its label's count, so that each of the three
    labels weighs the same (a mean weight of 1)."""
    counts = np.bincount(labels, minlength=3).astype(np.float64)
    return (len(labels) / (3 * np.maximum(counts, 1)))[labels].astype(np.float32)


def training_set(embeddings: np.ndarray, labels: np.ndarray, hard: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head's (inputs, labels, weights): the examples weighted by label_weights, and the
    mined windows hard as _unknown_, weighing together HARD_NEGATIVE_WEIGHT times one label."""
    weights = label_weights(labels)
    per_label = len(labels) / 3
    hard_weights = np.full(len(hard), HARD_NEGATIVE_WEIGHT * per_label / max(len(hard), 1),
                           np.float32)
    return (np.concatenate([embeddings, hard.astype(np.float32)]),
            np.concatenate([labels, np.full(len(hard), UNKNOWN_INDEX, labels.dtype)]),
            np.concatenate([weights, hard_weights]))


def negative_stream(clips: np.ndarray, noises: Sequence[np.ndarray], duration_s: int,
                    sample_rate: int, seed: int) -> np.ndarray:
    """int16 audio of duration_s: the words of clips one every 1 to 3 s, in noise
    (generate_streaming_test_wav.py's defaults), without any wake word."""
    if not len(clips):
        raise UsageError("no clip of other words is left for the negative stream")
    mixing = test_recordings.Mixing(sample_rate, 1000, duration_s, 2000, 100.0, 0.1, (-6.0, 0.0),
                                    seed)
    audio, _ = test_recordings.generate(test_recordings.Words({}, clips), noises, mixing)
    return audio


def choose_threshold(scores: detection.StreamScores, duration_s: float, per_hour: float,
                     suppression_ms: float) -> Tuple[float, int]:
    """The lowest threshold at which a stream without the wake word gives at most per_hour
    false alarms per hour (detections, as detection.StreamScores.detections makes them), and
    how many it gives there: a bisection over the stream's own scores (a lower threshold
    detects at least as much, up to suppression's rare exceptions; the count returned is
    that of the threshold returned)."""
    allowed = int(np.floor(per_hour * duration_s / 3600 + 1e-9))
    candidates = np.unique(scores.top_score[scores.top_score >= 0])[::-1]  # highest first
    if not len(candidates):
        return 0.0, 0
    low, high = 0, len(candidates)  # candidates[low] is within the rate; none from high on
    while high - low > 1:
        middle = (low + high) // 2
        if len(scores.detections(float(candidates[middle]), suppression_ms)) <= allowed:
            low = middle
        else:
            high = middle
    chosen = float(candidates[low])
    return chosen, len(scores.detections(chosen, suppression_ms))


def detection_defaults() -> detection.DetectionSettings:
    """test_streaming_accuracy.py's detection flags as they are when not given."""
    parser = argparse.ArgumentParser()
    detection.add_detection_flags(parser)
    return detection.detection_settings_from_flags(parser.parse_args([]))


def detector_settings(content: bytes) -> Tuple[features.ModelSettings, List[str]]:
    """The fingerprint settings and labels a detector's .tflite carries (kws/runtime/metadata.py)."""
    payload = metadata.read_metadata(content) or {}
    labels = list(payload.get("labels") or [])
    values = metadata.file_values(payload)
    fields = [field.name for field in dataclasses.fields(features.ModelSettings)]
    return features.prepare_model_settings(*(values[name] for name in fields)), labels


def detector_scores(tflite_path: str, audio: np.ndarray) -> detection.StreamScores:
    """A detector's .tflite over int16 audio as test_streaming_accuracy.py runs it without
    flags: its own settings, the default detection flags (a streaming file: its own stride)."""
    with open(tflite_path, "rb") as handle:
        settings, labels = detector_settings(handle.read())
    model = tflite_model.TFLiteModel(tflite_path)
    model.check_settings(settings, labels)
    return detection.stream_scores(audio, settings, model, labels, detection_defaults())
