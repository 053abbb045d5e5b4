"""Keyword detection on continuous audio, as a wake-word device runs a model, and its accuracy.

The model scores a clip-long window of the recording every --clip_stride_ms.
Each window's scores are averaged with those of the windows that started at
most --average_window_ms before it; a keyword is detected where its averaged
score is the highest and above --detection_threshold, unless another
detection happened less than --suppression_ms before. This is TensorFlow's
RecognizeCommands (examples/speech_commands), with its first decision after 4
results, without its rule that a word can never be detected twice in a row,
and with _silence_ and _unknown_ never detections. A detection's time is the
start of the newest window in its average (TensorFlow's convention), the
reference of a ground-truth time (the start of the keyword's clip); the device
decides when that window ends, one clip later: the latency is the time from
the start of the keyword's clip to that decision.

Features are computed once per frame of the recording, and a window's
fingerprint is a slice of frames: when the clip stride is not a multiple of
the frame stride, windows start at several phases of the frame grid and the
frames are computed once per phase (frame stride / gcd(clip stride, frame
stride) passes over the recording).

Detections are matched to the ground truth within --time_tolerance_ms: a hit
is a detection of the right keyword, a wrong label one of another keyword
(the keyword then counts as missed), a false alarm a detection near no
keyword, or a second one near the same keyword. The sweep repeats the
detection over thresholds: false alarms per hour against miss rate.
"""
import argparse
import dataclasses
import math
from typing import Callable, List, NamedTuple, Optional, Sequence

import numpy as np

from kws import cli, features
from kws.cli import UsageError
from kws.detection.recordings import Keyword
from kws.vocabulary import SILENCE_LABEL, UNKNOWN_WORD_LABEL

NOT_DETECTED = (SILENCE_LABEL, UNKNOWN_WORD_LABEL)
MINIMUM_COUNT = 4  # RecognizeCommands' minimum_count: results averaged before a first decision
FRAME_CHUNK_MS = 4000  # frames are computed over chunks of the recording this long
FRAME_CHUNK_BATCH = 4  # chunks per numpy batch: their spectra stay in the CPU's cache
WINDOW_BATCH = 4096  # windows fingerprinted and scored at once
SWEEP_THRESHOLDS = tuple(round(i / 100, 2) for i in range(100)) + (0.995, 0.999)

Scorer = Callable[[np.ndarray], np.ndarray]  # fingerprints [n, size] -> scores [n, labels]
AUDIO_WINDOW_BATCH = 256  # clips of audio scored at once by a raw-audio model


def takes_audio(scorer: Scorer) -> bool:
    """Whether scorer is fed clips [n, desired_samples] instead of fingerprints: a raw-audio
    model (convert.py --include_features), whose TFLiteModel says so."""
    return bool(getattr(scorer, "takes_audio", False))


def add_detection_flags(parser: argparse.ArgumentParser) -> None:
    """The sliding window, the smoothing and the detection rule (TensorFlow's defaults)."""
    group = parser.add_argument_group("detection on recordings longer than a clip")
    group.add_argument("--clip_stride_ms", type=cli.positive_float, default=30.0,
                       help="How often the model scores the last clip of audio. Frames are computed "
                            "once for each phase of this stride on the --window_stride_ms grid.")
    group.add_argument("--average_window_ms", type=cli.non_negative_float, default=500.0,
                       help="Scores are averaged over the windows that started this long before.")
    group.add_argument("--detection_threshold", type=cli.fraction, default=0.7,
                       help="A keyword is detected when its averaged score is above this.")
    group.add_argument("--suppression_ms", type=cli.non_negative_float, default=1500.0,
                       help="No detection for this long after a detection.")


def add_accuracy_flags(parser: argparse.ArgumentParser) -> None:
    """Matching detections to the ground truth, the sweep and --output_json."""
    parser.add_argument("--time_tolerance_ms", type=cli.non_negative_float, default=750.0,
                        help="A detection this close to a ground-truth keyword matches it.")
    parser.add_argument("--sweep_thresholds", action="store_true",
                        help="Also print false alarms per hour against miss rate for detection "
                             "thresholds 0.00 to 0.99, 0.995 and 0.999.")
    parser.add_argument("--output_json", default=None,
                        help="Also write the figures (and the sweep) to this JSON file.")


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """The flags of add_detection_flags."""

    clip_stride_ms: float
    average_window_ms: float
    detection_threshold: float
    suppression_ms: float


def detection_settings_from_flags(args: argparse.Namespace) -> DetectionSettings:
    return DetectionSettings(args.clip_stride_ms, args.average_window_ms,
                             args.detection_threshold, args.suppression_ms)


class Detection(NamedTuple):
    """A keyword detected at time_ms (the start of the newest window averaged)."""

    time_ms: float
    label: str
    score: float


def frame_mfccs(audio: np.ndarray, fingerprinter: features.Fingerprinter,
                model_settings: features.ModelSettings) -> np.ndarray:
    """The MFCC frames [count, coefficients] of int16 audio, frame k from the samples at
    k * window_stride_samples: the frames of model_settings' fingerprint, over the whole audio.

    fingerprinter is features.Fingerprinter of chunk_settings(model_settings): the recording is
    cut into chunks of whole frames, each fingerprinted as one long clip.
    """
    s = model_settings
    count = max(0, 1 + (len(audio) - s.window_size_samples) // s.window_stride_samples)
    chunk = fingerprinter.model_settings
    hop = chunk.spectrogram_length * s.window_stride_samples
    chunks = max(1, math.ceil(count / chunk.spectrogram_length))
    padded = np.zeros((chunks - 1) * hop + chunk.desired_samples, dtype=np.int16)
    kept = min(len(audio), len(padded))
    padded[:kept] = audio[:kept]
    windows = np.lib.stride_tricks.sliding_window_view(padded, chunk.desired_samples)[::hop]
    mfccs = fingerprinter(windows, batch_size=FRAME_CHUNK_BATCH)
    return mfccs.reshape(-1, s.dct_coefficient_count)[:count]


def chunk_settings(model_settings: features.ModelSettings) -> features.ModelSettings:
    """The settings of the long clips that frame_mfccs fingerprints."""
    return dataclasses.replace(model_settings, clip_duration_ms=FRAME_CHUNK_MS)


class SlidingWindows:
    """The clip-long windows of a recording, one every stride_samples, fingerprinted as
    features.Fingerprinter fingerprints each clip, from frames computed once per phase."""

    def __init__(self, audio: np.ndarray, model_settings: features.ModelSettings,
                 stride_samples: int):
        s = self.model_settings = model_settings
        count = max(0, 1 + (len(audio) - s.desired_samples) // stride_samples)
        self.offsets = np.arange(count, dtype=np.int64) * stride_samples
        self.audio = audio
        fingerprinter = features.Fingerprinter(chunk_settings(s))
        self._frames = {int(phase): frame_mfccs(audio[phase:], fingerprinter, s)
                        for phase in np.unique(self.offsets % s.window_stride_samples)}

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def phases(self) -> int:
        """How many passes over the recording computed the frames."""
        return len(self._frames)

    def clips(self, rows: np.ndarray) -> np.ndarray:
        """The audio [len(rows), desired_samples] of the windows rows."""
        return self.audio[self.offsets[rows, None] + np.arange(self.model_settings.desired_samples)]

    def fingerprints(self, rows: np.ndarray) -> np.ndarray:
        """The fingerprints [len(rows), fingerprint_size] of the windows rows."""
        s = self.model_settings
        offsets = self.offsets[rows]
        phases = offsets % s.window_stride_samples
        starts = offsets // s.window_stride_samples
        steps = np.arange(s.spectrogram_length)
        out = np.empty((len(offsets), s.fingerprint_size), dtype=np.float32)
        for phase, frames in self._frames.items():
            chosen = np.flatnonzero(phases == phase)
            out[chosen] = frames[starts[chosen, None] + steps].reshape(len(chosen), -1)
        return out


@dataclasses.dataclass
class StreamScores:
    """Per window: its start, the label of the highest averaged score and that score
    (-1 where no decision may be made: too few results yet, or the top label is not a keyword)."""

    times_ms: np.ndarray
    top: np.ndarray
    top_score: np.ndarray
    labels: Sequence[str]

    @property
    def stride_ms(self) -> float:
        """The time between two windows."""
        return float(self.times_ms[1] - self.times_ms[0]) if len(self.times_ms) > 1 else 0.0

    def detections(self, threshold: float, suppression_ms: float) -> List[Detection]:
        """The keywords detected at threshold, each suppressing the next for suppression_ms."""
        candidates = np.flatnonzero(self.top_score > threshold)
        times = self.times_ms[candidates]
        found, position = [], 0
        while position < len(candidates):
            i = candidates[position]
            found.append(Detection(float(self.times_ms[i]), self.labels[self.top[i]],
                                   float(self.top_score[i])))
            position = int(np.searchsorted(times, self.times_ms[i] + suppression_ms, side="right"))
        return found


def smooth(times_ms: np.ndarray, scores: np.ndarray, labels: Sequence[str], stride_ms: float,
           average_window_ms: float) -> StreamScores:
    """Each window's scores averaged with those of the windows that started at most
    average_window_ms before it; no decision before MINIMUM_COUNT results and a quarter of
    the averaging window (RecognizeCommands), or at once when the window holds fewer."""
    span = int(average_window_ms / stride_ms + 1e-9)  # earlier windows in each average
    cumulative = np.concatenate([np.zeros((1, scores.shape[1])),
                                 np.cumsum(scores, axis=0, dtype=np.float64)])
    ends = np.arange(1, len(scores) + 1)
    starts = np.maximum(0, ends - span - 1)
    averaged = (cumulative[ends] - cumulative[starts]) / (ends - starts)[:, None]
    top = np.argmax(averaged, axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    top_score = averaged[np.arange(len(scores)), top]
    first = min(span, max(MINIMUM_COUNT - 1, math.ceil(average_window_ms / 4 / stride_ms - 1e-9)))
    keyword = np.array([label not in NOT_DETECTED for label in labels])
    decides = (ends > first) & keyword[top]
    return StreamScores(times_ms, top, np.where(decides, top_score, -1.0), list(labels))


def stream_scores(audio: np.ndarray, model_settings: features.ModelSettings, scorer: Scorer,
                  labels: Sequence[str], settings: DetectionSettings) -> StreamScores:
    """The model slid over int16 audio every clip_stride_ms, its scores averaged; a raw-audio
    scorer (takes_audio) is fed each window's audio instead of its fingerprint; a streaming
    model (its stream) runs once per its own stride instead (stateful_scores)."""
    if getattr(scorer, "stream", None) is not None:
        return stateful_scores(audio, model_settings, scorer.stream, labels, settings)
    rate = model_settings.sample_rate
    stride = int(round(rate * settings.clip_stride_ms / 1000))
    if stride <= 0:
        raise UsageError(f"--clip_stride_ms {settings.clip_stride_ms} is under one sample "
                         f"at --sample_rate {rate}")
    windows = SlidingWindows(audio, model_settings, stride)
    if not len(windows):
        raise UsageError(f"the recording ({len(audio) / rate:.2f} s) is shorter than one clip "
                         f"(--clip_duration_ms {model_settings.clip_duration_ms})")
    inputs, size = ((windows.clips, AUDIO_WINDOW_BATCH) if takes_audio(scorer)
                    else (windows.fingerprints, WINDOW_BATCH))
    batches = [np.arange(start, min(start + size, len(windows)))
               for start in range(0, len(windows), size)]
    scores = np.concatenate([scorer(inputs(rows)) for rows in batches])
    if scores.shape[1] != len(labels):
        raise UsageError(f"the model gives {scores.shape[1]} scores, but the labels are "
                         f"{len(labels)} ({', '.join(labels)})")
    stride_ms = stride * 1000 / rate
    return smooth(windows.offsets * 1000 / rate, scores, labels, stride_ms,
                  settings.average_window_ms)


def stateful_scores(audio: np.ndarray, model_settings: features.ModelSettings, runner,
                    labels: Sequence[str], settings: DetectionSettings) -> StreamScores:
    """A streaming model (convert.py --streaming; runner: a stream_runtime.StreamRunner) run
    over int16 audio from a reset, one call per its stride (not --clip_stride_ms), its states
    kept: the scores of the window that ends at each call, averaged."""
    s = model_settings
    recording = audio if runner.audio else frame_mfccs(
        audio, features.Fingerprinter(chunk_settings(s)), s)
    scores, starts = runner.recording_scores(recording, s)
    if not len(scores):
        raise UsageError(f"the recording ({len(audio) / s.sample_rate:.2f} s) is shorter than "
                         f"one clip (--clip_duration_ms {s.clip_duration_ms})")
    stride = runner.per_call * (1 if runner.audio else s.window_stride_samples)
    return smooth(starts * 1000 / s.sample_rate, scores, labels, stride * 1000 / s.sample_rate,
                  settings.average_window_ms)


@dataclasses.dataclass
class Accuracy:
    """Detections matched to the ground truth of a recording."""

    ground_truth: int
    detections: int
    hits: int
    wrong_labels: int
    false_alarms: int
    duration_s: float
    latencies_ms: List[float]

    def figures(self) -> dict:
        """The JSON figures: rates (None without ground truth), counts, mean latency."""
        truth = self.ground_truth
        return {
            "hit_rate": self.hits / truth if truth else None,
            "miss_rate": 1 - self.hits / truth if truth else None,
            "wrong_label_rate": self.wrong_labels / truth if truth else None,
            "false_alarms_per_hour": self.false_alarms * 3600 / self.duration_s,
            "mean_latency_ms": float(np.mean(self.latencies_ms)) if self.latencies_ms else None,
            "counts": {"ground_truth": truth, "detections": self.detections, "hits": self.hits,
                       "wrong_labels": self.wrong_labels,
                       "misses": truth - self.hits - self.wrong_labels,
                       "false_alarms": self.false_alarms},
            "duration_s": self.duration_s,
        }


def match(detections: Sequence[Detection], truth: Sequence[Keyword], tolerance_ms: float,
          duration_s: float, clip_duration_ms: float) -> Accuracy:
    """Hits (the nearest unmatched keyword of the same label within tolerance_ms), then wrong
    labels (an unmatched keyword of another label), the other detections false alarms. A hit's
    latency runs from the keyword's clip start to the end of the detection's window."""
    truth = sorted(truth, key=lambda keyword: keyword.time_ms)
    times = np.array([keyword.time_ms for keyword in truth], dtype=np.float64)
    outcome: List[Optional[str]] = [None] * len(truth)
    latencies, unmatched = [], []

    def near(detection: Detection, same_label: bool) -> Optional[int]:
        low = np.searchsorted(times, detection.time_ms - tolerance_ms, side="left")
        high = np.searchsorted(times, detection.time_ms + tolerance_ms, side="right")
        free = [j for j in range(low, high) if outcome[j] is None and
                (truth[j].label == detection.label) == same_label]
        return min(free, key=lambda j: abs(times[j] - detection.time_ms)) if free else None

    for detection in detections:
        j = near(detection, same_label=True)
        if j is None:
            unmatched.append(detection)
        else:
            outcome[j] = "hit"
            latencies.append(detection.time_ms + clip_duration_ms - times[j])
    false_alarms = 0
    for detection in unmatched:
        j = near(detection, same_label=False)
        if j is None:
            false_alarms += 1
        else:
            outcome[j] = "wrong"
    return Accuracy(len(truth), len(detections), outcome.count("hit"), outcome.count("wrong"),
                    false_alarms, duration_s, latencies)


def sweep(stream: StreamScores, truth: Sequence[Keyword], suppression_ms: float,
          tolerance_ms: float, duration_s: float, clip_duration_ms: float,
          thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> List[dict]:
    """The figures of match at each threshold (the detection-error tradeoff)."""
    return [dict(threshold=threshold, **match(stream.detections(threshold, suppression_ms), truth,
                                              tolerance_ms, duration_s, clip_duration_ms).figures())
            for threshold in thresholds]


def threshold_for_false_alarms(rows: Sequence[dict], per_hour: float) -> Optional[dict]:
    """The sweep row of the lowest threshold with at most per_hour false alarms per hour."""
    return next((row for row in rows if row["false_alarms_per_hour"] <= per_hour), None)


def format_figures(figures: dict) -> str:
    """One line: hit rate, wrong labels, false alarms per hour, latency, with their counts."""
    counts = figures["counts"]
    truth = counts["ground_truth"]

    def rate(name: str, count: str) -> str:
        value = figures[name]
        return f"{'n/a' if value is None else f'{value:.4f}'} ({counts[count]}/{truth})"

    latency = figures["mean_latency_ms"]
    return (f"hit_rate {rate('hit_rate', 'hits')}, wrong_label_rate "
            f"{rate('wrong_label_rate', 'wrong_labels')}, false_alarms_per_hour "
            f"{figures['false_alarms_per_hour']:.1f} ({counts['false_alarms']} in "
            f"{figures['duration_s']:.0f} s), mean latency "
            + ("n/a" if latency is None else f"{latency:.0f} ms"))


def format_sweep(rows: Sequence[dict]) -> str:
    """The sweep as a table, one row per threshold where miss rate or false alarms change."""
    lines = ["threshold  miss_rate  false_alarms_per_hour  wrong_label_rate"]
    previous = None
    for row in rows:
        point = (row["miss_rate"], row["false_alarms_per_hour"], row["wrong_label_rate"])
        if point != previous:
            miss, wrong = (("n/a" if value is None else f"{value:.4f}")
                           for value in (row["miss_rate"], row["wrong_label_rate"]))
            lines.append(f"{row['threshold']:9g}  {miss:>9}  "
                         f"{row['false_alarms_per_hour']:21.1f}  {wrong:>16}")
        previous = point
    return "\n".join(lines)
