"""Benchmark of optimize.py on our real-speech DS-CNN-S: every technique, one table, its targets.

    python bench/bench_optimize.py --steps 2000

Starts from Pretrained_models/DS_CNN/DS_CNN_S (trained on the real clips of
../shared/data/speech_commands_v0.01_train) and fine-tunes with each technique
on the same real training partition, with the recipe of its training
(train_commands.txt, Part 4: 25% unknown words, real background noise);
optimize.py selects on the folder's validation partition. For the start and
every technique: float and int8 accuracy on the real dev clips
(../shared/data/speech_commands_test_v0.02_dev, measured only: never used to
train, tune or select), .tflite and gzip bytes, sparsity and the distinct
values of every kernel, and the issue's target for the row. The int8 model of
a row is what convert.py makes of its float checkpoint (post-training
quantization calibrated on training clips); after quantization-aware training
a second row gives the .tflite that optimize.py converts from the
quantization-aware model itself.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kws import cli  # noqa: E402
from kws import evaluation  # noqa: E402
from kws import features  # noqa: E402
from kws import vocabulary  # noqa: E402
from kws.data import speech_commands  # noqa: E402
from kws.models import registry  # noqa: E402
from kws.optimization import report as optimization_report  # noqa: E402
from kws.optimization import run as optimization  # noqa: E402
from kws.optimization import stages  # noqa: E402
from kws.optimization.settings import Settings  # noqa: E402
from kws.runtime import report as tflite_report  # noqa: E402
from kws.runtime.tflite_model import TFLiteModel  # noqa: E402
from kws.training import checkpoints  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
START_CHECKPOINT = os.path.join(ROOT, "Pretrained_models", "DS_CNN", "DS_CNN_S", "ckpt")
DEV_DIR = os.path.join(SHARED, "data", "speech_commands_test_v0.02_dev")
DATA_DIR = os.path.join(SHARED, "data", "speech_commands_v0.01_train")
NOISE_DIR = os.path.join(SHARED, "data", "_background_noise_")
DS_CNN_S_FLAGS = ["--model_architecture", "ds_cnn", "--model_size_info",
                  "5", "64", "10", "4", "2", "2", "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                  "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                  "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]
DATA_FLAGS = ["--data_url", "", "--data_dir", DATA_DIR, "--background_noise_dir", NOISE_DIR,
              "--unknown_percentage", "25"]
# Points of int8 dev accuracy each technique may lose against the start's int8 model.
ALLOWED_LOSS = {"cluster": 1.0, "prune": 2.0, "prune_2by4": 1.5}
GZIP_LIMIT = {"cluster": 1.0, "prune": 0.6}  # gzip bytes against the start's


@dataclasses.dataclass
class Row:
    """One line of the table."""

    name: str
    float_accuracy: Optional[float]
    int8_accuracy: float
    tflite_bytes: int
    gzip_bytes: int
    sparsity: float
    unique: List[int]


def optimize_args(args: argparse.Namespace, technique: str) -> argparse.Namespace:
    """optimize.py's flags for one technique on DS-CNN-S: two phases of --steps / 2."""
    first = max(1, args.steps // 2)
    frequency = max(1, args.steps // 20)
    parser = cli.make_parser("optimize.py")
    optimization.add_flags(parser)
    return parser.parse_args([
        *DS_CNN_S_FLAGS, *DATA_FLAGS, "--technique", technique, "--checkpoint", START_CHECKPOINT,
        "--seed", str(args.seed),
        "--train_dir", os.path.join(args.work_dir, "train"), "--summaries_dir", "",
        "--batch_size", str(args.batch_size), "--eval_step_interval", str(first),
        "--how_many_training_steps", f"{first},{max(1, args.steps - first)}",
        "--learning_rate", args.learning_rate, "--pruning_frequency", str(frequency)])


def run_technique(args: argparse.Namespace, technique: str) -> optimization.Outcome:
    """optimize.py's run of one technique, its flags turned into settings as the script does."""
    flags = optimize_args(args, technique)
    settings = Settings.from_flags(flags)
    return optimization.optimize(settings, speech_commands.DataSource(flags, settings.model.model_settings))


def measure(name: str, model: Optional[registry.tf.keras.Model], content: bytes,
            dev: Sequence[np.ndarray]) -> Row:
    """The figures of one row; model None: no float model (a row of a QAT .tflite)."""
    fingerprints, labels = dev
    float_accuracy = None
    if model is not None:
        float_accuracy = evaluation.evaluate(model, fingerprints, labels, model.output_shape[-1]).accuracy
    report = tflite_report.analyze(content)
    stats = optimization_report.kernel_stats(model) if model is not None else []
    sizes = [int(np.prod(item.shape)) for item in stats]
    sparsity = float(np.average([item.sparsity for item in stats], weights=sizes)) if stats else float("nan")
    tflite = TFLiteModel(content=content)
    int8_accuracy = evaluation.evaluate(tflite, fingerprints, labels, tflite.label_count).accuracy
    return Row(name, float_accuracy, int8_accuracy,
               report["file_bytes"], report["gzip_bytes"], sparsity, [item.unique for item in stats])


def target(row: Row, start: Row, rows: Dict[str, Row]) -> str:
    """The issue's target for a row against the start's int8 model, and whether it holds."""
    technique = row.name.split(" ")[0]
    lost = 100 * (start.int8_accuracy - row.int8_accuracy)
    if technique == "qat" and row.name.endswith("(QAT .tflite)"):
        return f"int8 >= start's PTQ {start.int8_accuracy:.4f}: " + \
            ("met" if row.int8_accuracy >= start.int8_accuracy else "missed")
    checks = []
    if technique in ALLOWED_LOSS:
        checks.append((f"loses <= {ALLOWED_LOSS[technique]:g}", lost <= ALLOWED_LOSS[technique]))
    if technique in GZIP_LIMIT:
        limit = GZIP_LIMIT[technique]
        text = "gzip < start's" if limit == 1.0 else f"gzip <= {limit:.0%} of start's"
        ok = row.gzip_bytes < start.gzip_bytes if limit == 1.0 else \
            row.gzip_bytes <= limit * start.gzip_bytes
        checks.append((text, ok))
    parts = technique.replace("prune_2by4", "prune2by4").split("_")
    if len(parts) > 1:  # a combination: at most the sum of its parts' losses
        part_losses = [100 * (start.int8_accuracy - rows[p.replace("prune2by4", "prune_2by4")]
                              .int8_accuracy) for p in parts
                       if p.replace("prune2by4", "prune_2by4") in rows]
        if len(part_losses) == len(parts):
            budget = max(0.0, sum(part_losses))
            checks.append((f"loses <= {budget:.2f} (its parts)", lost <= budget + 1e-9))
    if not checks:
        return f"{lost:+.2f} points lost"
    return f"{lost:.2f} lost; " + ", ".join(f"{text}: {'met' if ok else 'missed'}"
                                            for text, ok in checks)


def format_table(rows: Sequence[Row], clips: int) -> str:
    """The table: one row per model, the distinct values of each kernel in layer order."""
    start, by_name = rows[0], {row.name: row for row in rows}
    lines = [f"DS-CNN-S, accuracy on {clips} real dev clips (speech_commands_test_v0.02_dev)",
             f"{'technique':<26}{'float':>7}{'int8':>7}{'tflite B':>10}{'gzip B':>9}{'sparsity':>9}"
             f"  {'unique values per kernel':<30}  target"]
    for row in rows:
        accuracy = f"{row.float_accuracy:.4f}" if row.float_accuracy is not None else "-"
        sparsity = f"{row.sparsity:.3f}" if row.unique else "="
        unique = " ".join(map(str, row.unique)) or "(as above)"
        verdict = "" if row is start else target(row, start, by_name)
        lines.append(f"{row.name:<26}{accuracy:>7}{row.int8_accuracy:>7.4f}{row.tflite_bytes:>10,}"
                     f"{row.gzip_bytes:>9,}{sparsity:>9}  {unique:<30}  {verdict}")
    return "\n".join(lines)


def convert(checkpoint: str, output_file: str, args: argparse.Namespace) -> bytes:
    """convert.py's int8 model of a checkpoint (post-training quantization, calibrated on the
    training partition of the real folder)."""
    if not os.path.exists(output_file):
        subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), *DS_CNN_S_FLAGS,
                        *DATA_FLAGS, "--seed", str(args.seed), "--checkpoint", checkpoint,
                        "--output_file", output_file], check=True)
    with open(output_file, "rb") as handle:
        return handle.read()


def main(args: argparse.Namespace) -> None:
    for path in (START_CHECKPOINT, DEV_DIR, DATA_DIR, NOISE_DIR):
        if not os.path.exists(path):
            raise cli.UsageError(f"{path} is missing: this benchmark needs it")
    known = stages.TECHNIQUES
    unknown = [technique for technique in args.techniques if technique not in known]
    if unknown:
        raise cli.UsageError(f"--techniques: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    first = optimize_args(args, args.techniques[0])
    model_settings = features.settings_from_flags(first)
    words_list = vocabulary.words_list_from_flags(first)
    clips, labels, _ = speech_commands.load_evaluation_folder(DEV_DIR, words_list, model_settings)
    dev = (features.Fingerprinter(model_settings)(clips), labels)
    tflite_dir = os.path.join(args.work_dir, "tflite")

    def plain_model(checkpoint: str) -> registry.tf.keras.Model:
        model = registry.create_model(model_settings, first.model_architecture, first.model_size_info,
                                      label_count=len(words_list))
        checkpoints.load_weights(model, checkpoint)
        return model

    start_ptq = convert(START_CHECKPOINT, os.path.join(tflite_dir, "start.tflite"), args)
    rows = [measure("start", plain_model(START_CHECKPOINT), start_ptq, dev)]
    for technique in args.techniques:
        outcome = run_technique(args, technique)
        content = convert(outcome.prefix, os.path.join(tflite_dir, f"{technique}.tflite"), args)
        rows.append(measure(technique, plain_model(outcome.prefix), content, dev))
        if outcome.int8_content is not None:
            rows.append(measure(f"{technique} (QAT .tflite)", None, outcome.int8_content, dev))
        print("\n" + format_table(rows, len(labels)), flush=True)
    table = format_table(rows, len(labels))
    cli.write_atomically(os.path.join(args.work_dir, "bench_optimize.txt"), (table + "\n").encode())
    print(f"\nsteps per stage: {args.steps}, learning rates {args.learning_rate}, batch size "
          f"{args.batch_size}; fine-tuned on the real "
          f"training partition; the int8 models are convert.py's (post-training quantization "
          f"calibrated on training clips), except the '(QAT .tflite)' rows")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=cli.positive_int, default=2000,
                        help="Fine-tuning steps per stage (optimize.py's default is 4000).")
    parser.add_argument("--techniques", type=cli.comma_list(str),
                        default=list(stages.TECHNIQUES),
                        help="Comma-separated techniques to run, in this order.")
    parser.add_argument("--learning_rate", default="0.0001,0.00002",
                        help="optimize.py's two learning rates, one per half of --steps.")
    parser.add_argument("--batch_size", type=cli.positive_int, default=100, help="Training batch size.")
    parser.add_argument("--work_dir", default="/tmp/bench_optimize",
                        help="Where training state, models and the table go; a rerun continues there.")
    parser.add_argument("--seed", type=int, default=59185, help="Seed of the training.")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
