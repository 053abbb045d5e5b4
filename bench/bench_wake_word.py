"""Wake-word detectors measured on real voices: recall at 0.5 and 1 false alarm per hour.

    python bench/bench_wake_word.py --word bed --work_dir work/bench_wake_word/bed

Rows of the table (each a detector, written by train_wake_word.py's library):
- text: from the typed word alone (synthesized positives) on the frozen --backbone;
- recordings: the same plus 10 recordings of the word, one from each of 10 speakers
  of the training partition of --data_dir;
- scratch (baseline a): the same architecture (backbone and head) trained whole from
  random weights on the text row's examples, no backbone;
- real (baseline b, an upper bound): the head on the backbone trained on the real
  clips of the word of the training partition, nothing synthesized.
Streams (test_recordings.generate, as generate_streaming_test_wav.py makes them): real speech
of the other words of the validation partition of --data_dir (never in the backbone's
training) in the noise recordings, --measure_minutes long, one word every 1 to 3 s, a
quarter of them the word itself at known times:
- all: its real clips of every partition (never in training: --exclude_words), for
  the rows that train on no real clip of it (text, scratch);
- validation: its clips of the validation partition only, for every row.
Each .tflite is scored as test_streaming_accuracy.py scores it with no flag but the
file (its own settings and detection defaults; kws/detection/detector.py's sweep over thresholds):
recall at 0.5 and 1 false alarm per hour, and at the threshold the file carries;
the curve of miss rate against false alarms per hour of each is a PNG (kws/plots.py).
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kws import cli  # noqa: E402
from kws import plots  # noqa: E402
from kws.data import data_split  # noqa: E402
from kws.data import dataset  # noqa: E402
from kws.detection import detector as detection  # noqa: E402
from kws.detection import recordings as test_recordings  # noqa: E402
from kws.runtime import metadata  # noqa: E402
from kws.wake_word import data  # noqa: E402
from kws.wake_word import stages  # noqa: E402

ROWS = ("text", "recordings", "scratch", "real")
RECORDINGS = 10
POSITIVE_PERCENTAGE = 25.0  # of the stream's words
THRESHOLDS = tuple(np.unique(np.round(np.concatenate(
    [detection.SWEEP_THRESHOLDS, 1 - np.logspace(-1, -4, 46)]), 6)))
RATES = (0.5, 1.0)  # false alarms per hour of the table


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--word", default="bed", help="The wake word (a word folder of --data_dir).")
    parser.add_argument("--work_dir", default="work/bench_wake_word", help="Every row's run, the "
                        "streams, the PNGs and bench.json.")
    parser.add_argument("--rows", type=cli.comma_list(str), default=list(ROWS),
                        help=f"Which rows ({', '.join(ROWS)}).")
    parser.add_argument("--measure_minutes", type=cli.positive_int, default=120,
                        help="Length of each measuring stream (--stream_minutes is the negative "
                             "stream each detector chooses its threshold on).")
    parser.add_argument("--scratch_steps", type=cli.positive_int, default=6000,
                        help="Training steps of the scratch baseline (a).")
    plots.add_plot_flag(parser, "each detector's miss rate against false alarms per hour "
                        "(default: --work_dir)")
    stages.add_flags(parser, run=False)
    return parser


def partition_of(path: str, args: argparse.Namespace) -> str:
    return data_split.which_set(path, args.validation_percentage, args.testing_percentage)


def row_flags(args: argparse.Namespace, output_dir: str, **changes) -> argparse.Namespace:
    """The train_wake_word.py flags of a row."""
    values = dict(vars(args), wake_word=args.word, output_dir=output_dir, recordings=None)
    values.update(changes)
    return argparse.Namespace(**values)


def takes(args: argparse.Namespace, clips: List[str], folder: str) -> str:
    """A folder of copies of clips (made once)."""
    if not os.path.isdir(folder):
        os.makedirs(folder + ".tmp", exist_ok=True)
        for path in clips:
            shutil.copy(path, os.path.join(folder + ".tmp", os.path.basename(path)))
        os.replace(folder + ".tmp", folder)
    return folder


def ten_speakers(clips: List[str], seed: int) -> List[str]:
    """One clip of each of RECORDINGS speakers (a seeded choice)."""
    by_speaker: Dict[str, str] = {}
    for path in sorted(clips):
        by_speaker.setdefault(data_split.speaker_of(path), path)
    return data.sample(sorted(by_speaker.values()), RECORDINGS, seed)


def train_scratch(args: argparse.Namespace, text_dir: str, output_dir: str) -> str:
    """Baseline (a): backbone and head trained whole from random weights on the text row's
    examples, converted, thresholded and reported as a row of train_wake_word.py is."""
    from kws import features
    from kws.models import registry
    from kws.wake_word import model
    run = stages.Run(stages.Settings.from_flags(row_flags(args, text_dir)), text_dir,
                        args.jobs)
    scratch = stages.Run(run.settings, output_dir, args.jobs)
    if os.path.exists(scratch.tflite_path):
        return scratch.tflite_path
    backbone = run.backbone
    examples, noises, _ = run.examples(backbone.settings.sample_rate,
                                       backbone.settings.desired_samples)
    fingerprinter = features.Fingerprinter(backbone.settings)
    chunks = list(examples.chunks(noises, backbone.settings.sample_rate, args.seed))
    inputs = np.concatenate([fingerprinter(clips) for clips, _ in chunks])
    labels = np.concatenate([chunk_labels for _, chunk_labels in chunks])
    fresh = dataclasses.replace(backbone, model=registry.create_model(
        backbone.settings, backbone.architecture, backbone.size_info,
        label_count=backbone.label_count))
    detector = model.detector(fresh, model.head_model(backbone.embedding.output_shape[-1],
                                                      args.head_units, args.seed))
    print(f"scratch: {len(labels)} examples, {args.scratch_steps} steps")
    model.train(detector, inputs, labels, data.label_weights(labels), args.scratch_steps,
                args.batch_size, args.learning_rate, args.seed, print)
    with np.load(run.path("representative.npz")) as saved:
        clips = saved["clips"]
    content, _ = model.convert_detector(detector, backbone.settings, backbone.architecture,
                                        run.labels, clips)
    os.makedirs(output_dir, exist_ok=True)
    for name in ("negative_stream.wav", "representative.npz", "near_misses.json"):
        shutil.copy(run.path(name), scratch.path(name))
    cli.write_atomically(scratch.path("detector_no_threshold.tflite"), content)
    scratch.choose_threshold()
    scratch.publish()
    return scratch.tflite_path


def make_stream(args: argparse.Namespace, positives: List[str], negatives: List[str],
                name: str) -> tuple:
    """A measuring stream (wav, ground truth), made once into --work_dir."""
    wav = os.path.join(args.work_dir, f"stream_{name}.wav")
    truth_path = wav[:-4] + "_labels.txt"
    if not os.path.exists(truth_path):
        duration_s = args.measure_minutes * 60
        words = test_recordings.Words(
            {args.word: data.load(positives, data.SAMPLE_RATE, data.SAMPLE_RATE)},
            data.load(data.sample(negatives, duration_s // 3 + 1, args.seed),
                      data.SAMPLE_RATE, data.SAMPLE_RATE))
        noises = test_recordings.load_noise(args.background_noise_dir, data.SAMPLE_RATE)
        mixing = test_recordings.Mixing(data.SAMPLE_RATE, 1000, duration_s, 2000,
                                        100 - POSITIVE_PERCENTAGE, 0.1, (-6.0, 0.0), args.seed)
        audio, truth = test_recordings.generate(words, noises, mixing)
        cli.write_atomically(wav, test_recordings.wav_bytes(audio, data.SAMPLE_RATE))
        test_recordings.write_ground_truth(truth_path, truth)
        print(f"Wrote {wav}: {test_recordings.describe(truth, mixing)} ({len(positives)} clips of "
              f"{args.word}, {len(words.unknown)} of other words)")
    return wav, truth_path


def measure(tflite_path: str, wav: str, truth_path: str, name: str, plot_dir: str) -> dict:
    """Recall at RATES and at the file's threshold, the sweep's PNG."""
    audio = test_recordings.read_recording(wav, data.SAMPLE_RATE)
    truth = test_recordings.read_ground_truth(truth_path)
    scores = data.detector_scores(tflite_path, audio)
    defaults = data.detection_defaults()
    tolerance = streaming_defaults().time_tolerance_ms
    duration_s = len(audio) / data.SAMPLE_RATE
    rows = detection.sweep(scores, truth, defaults.suppression_ms, tolerance, duration_s, 1000,
                           THRESHOLDS)
    figures = {"positives": len(truth), "hours": duration_s / 3600}
    for rate in RATES:
        point = detection.threshold_for_false_alarms(rows, rate)
        figures[f"recall_at_{rate:g}"] = point["hit_rate"] if point else 0.0
        if rate == 1.0:
            plots.detection_curve(plot_dir, rows, point, name)
    with open(tflite_path, "rb") as handle:
        threshold = metadata.read_metadata(handle.read())["threshold"]
    own = detection.match(scores.detections(threshold, defaults.suppression_ms), truth, tolerance,
                          duration_s, 1000).figures()
    figures.update(threshold=threshold, recall_at_threshold=own["hit_rate"],
                   false_alarms_per_hour_at_threshold=own["false_alarms_per_hour"])
    return figures


def build(flags: argparse.Namespace) -> str:
    """A detector of one row: train_wake_word.py's work on the row's flags."""
    return stages.build(stages.Settings.from_flags(flags), flags.output_dir, flags.jobs)


def streaming_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detection.add_accuracy_flags(parser)
    return parser.parse_args([])


def main(args: argparse.Namespace) -> None:
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        raise cli.UsageError(f"--rows {','.join(unknown)}: choose from {', '.join(ROWS)}")
    folders = data.word_folders(dataset.data_dirs_from_flag(args.data_dir))
    if args.word not in folders:
        raise cli.UsageError(f"--word {args.word} is no word folder of --data_dir {args.data_dir}")
    real = folders[args.word]
    validation = [path for path in real if partition_of(path, args) == "validation"]
    training = [path for path in real if partition_of(path, args) == "training"]
    negatives = [path for word, paths in folders.items() if word != args.word for path in paths
                 if partition_of(path, args) == "validation"]
    work = args.work_dir
    start = time.time()
    detectors = {}
    if {"text", "scratch"} & set(args.rows):
        detectors["text"] = build(row_flags(args, os.path.join(work, "text")))
    if "recordings" in args.rows:
        folder = takes(args, ten_speakers(training, args.seed), os.path.join(work, "takes"))
        detectors["recordings"] = build(row_flags(
            args, os.path.join(work, "recordings"), recordings=folder))
    if "scratch" in args.rows:
        detectors["scratch"] = train_scratch(args, os.path.join(work, "text"),
                                             os.path.join(work, "scratch"))
    if "real" in args.rows:
        folder = takes(args, training, os.path.join(work, "real_clips"))
        detectors["real"] = build(row_flags(args, os.path.join(work, "real"),
                                                     recordings=folder, synthesized_clips=0))
    streams = {"all": make_stream(args, real, negatives, "all"),
               "validation": make_stream(args, validation, negatives, "validation")}
    results = []
    for row in (row for row in ROWS if row in detectors):
        for stream in ("all", "validation") if row in ("text", "scratch") else ("validation",):
            figures = measure(detectors[row], *streams[stream], f"{args.word}_{row}_{stream}",
                              args.plot_dir or work)
            results.append(dict(row=row, stream=stream, **figures))
    print_table(args.word, results)
    print(f"took {time.time() - start:.0f} s")
    path = os.path.join(work, "bench.json")
    cli.write_atomically(path, (json.dumps(results, indent=1) + "\n").encode())
    print(f"Wrote {path}")


def print_table(word: str, results: List[dict]) -> None:
    print(f"\n{word}: recall at false alarms per hour (streams of real speech, validation partition)")
    print("| detector | positives | stream h | recall @0.5/h | recall @1/h | threshold | "
          "recall, FA/h at it |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        print(f"| {result['row']} | {result['positives']} ({result['stream']}) | "
              f"{result['hours']:.2f} | {result['recall_at_0.5']:.3f} | {result['recall_at_1']:.3f} | "
              f"{result['threshold']:.4f} | {result['recall_at_threshold']:.3f}, "
              f"{result['false_alarms_per_hour_at_threshold']:.1f} |")


if __name__ == "__main__":
    cli.run(main, build_parser())
