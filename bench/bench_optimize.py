"""Benchmark of optimize.py on DS-CNN-S from Arm's checkpoint: every technique, one table.

    python bench/bench_optimize.py --steps 400

For the starting checkpoint and the result of each technique: float accuracy
and int8 accuracy on the real dev clips (../shared/data/speech_commands_test_v0.02_dev),
.tflite and gzip bytes, sparsity and the distinct values of every kernel.
The int8 model of a row is what convert.py makes of its float checkpoint
(post-training quantization); after quantization-aware training a second row
gives the .tflite that optimize.py converts from the quantization-aware model
itself.

No real keyword training set exists here, so every technique fine-tunes on
keywords synthesized by synthesize_dataset.py plus the real unknown-word
clips (bed, cat, happy) and the real background noise of ../shared/data;
convert.py calibrates post-training quantization on the same training clips. The dev
clips are used only for the accuracies in the table, never for training or
selection. The data column of the table says what each row was trained on.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
from typing import List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cli  # noqa: E402  (selects tf-keras before TensorFlow is imported)
import checkpoints  # noqa: E402
import evaluation  # noqa: E402
import features  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
import optimization  # noqa: E402
import optimization_report  # noqa: E402
import optimization_stages  # noqa: E402
import optimize  # noqa: E402  (its parser: the flags of a run)
import tflite_report  # noqa: E402
from tflite_model import TFLiteModel  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
ARM_CHECKPOINT = os.path.join(SHARED, "reference", "arm_pretrained", "DS_CNN", "DS_CNN_S", "ckpt")
DEV_DIR = os.path.join(SHARED, "data", "speech_commands_test_v0.02_dev")
NOISE_DIR = os.path.join(SHARED, "data", "_background_noise_")
UNKNOWN_DIR = os.path.join(SHARED, "data", "speech_commands_v0.01_train")  # its non-keyword words
KEYWORDS = "yes,no,up,down,left,right,on,off,stop,go"
DS_CNN_S_FLAGS = ["--model_architecture", "ds_cnn", "--model_size_info",
                  "5", "64", "10", "4", "2", "2", "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                  "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                  "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]
START_DATA = "Arm's training (full Speech Commands v0.02)"
FINE_TUNING_DATA = "synthesized keywords + real unknown words and noise"


@dataclasses.dataclass
class Row:
    """One line of the table."""

    name: str
    data: str
    float_accuracy: Optional[float]
    int8_accuracy: float
    tflite_bytes: int
    gzip_bytes: int
    sparsity: float
    unique: List[int]


def prepare_data(work_dir: str, clips_per_word: int, seed: int) -> str:
    """Synthesized keywords, real noise and links to the real unknown words, in one data folder."""
    data_dir = os.path.join(work_dir, "data")
    subprocess.run([sys.executable, os.path.join(ROOT, "synthesize_dataset.py"), "--output_dir", data_dir,
                    "--words", KEYWORDS, "--clips_per_word", str(clips_per_word), "--seed", str(seed),
                    "--background_dir", NOISE_DIR], check=True)
    for word in sorted(os.listdir(UNKNOWN_DIR)):
        if word in KEYWORDS.split(",") or not os.path.isdir(os.path.join(UNKNOWN_DIR, word)):
            continue
        link = os.path.join(data_dir, word)
        if not os.path.exists(link):
            os.symlink(os.path.join(UNKNOWN_DIR, word), link)
    return data_dir


def optimize_args(args: argparse.Namespace, data_dir: str, technique: str) -> argparse.Namespace:
    """optimize.py's flags for one technique on DS-CNN-S: two phases of --steps / 2."""
    first = max(1, args.steps // 2)
    frequency = max(1, args.steps // 20)
    return optimize.build_parser().parse_args([
        *DS_CNN_S_FLAGS, "--technique", technique, "--checkpoint", ARM_CHECKPOINT,
        "--data_url", "", "--data_dir", data_dir, "--wanted_words", KEYWORDS, "--seed", str(args.seed),
        "--train_dir", os.path.join(args.work_dir, "train"), "--summaries_dir", "",
        "--batch_size", str(args.batch_size), "--eval_step_interval", str(first),
        "--how_many_training_steps", f"{first},{max(1, args.steps - first)}",
        "--learning_rate", "0.0001,0.00002", "--pruning_frequency", str(frequency)])


def measure(name: str, data: str, model: Optional[models.tf.keras.Model], content: bytes,
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
    return Row(name, data, float_accuracy, int8_accuracy,
               report["file_bytes"], report["gzip_bytes"], sparsity, [item.unique for item in stats])


def format_table(rows: Sequence[Row], clips: int) -> str:
    """The table: one row per model, the distinct values of each kernel in layer order."""
    lines = [f"DS-CNN-S, accuracy on {clips} real dev clips (speech_commands_test_v0.02_dev)",
             f"{'technique':<32}{'float':>7}{'int8':>7}{'tflite B':>10}{'gzip B':>9}{'sparsity':>9}"
             f"  {'unique values per kernel (conv1, dw1, pw1, ..., fc)':<52}  data"]
    for row in rows:
        accuracy = f"{row.float_accuracy:.4f}" if row.float_accuracy is not None else "-"
        sparsity = f"{row.sparsity:.3f}" if row.unique else "="
        unique = " ".join(map(str, row.unique)) or "(as above)"
        lines.append(f"{row.name:<32}{accuracy:>7}{row.int8_accuracy:>7.4f}{row.tflite_bytes:>10,}"
                     f"{row.gzip_bytes:>9,}{sparsity:>9}  {unique:<52}  {row.data}")
    return "\n".join(lines)


def convert(checkpoint: str, output_file: str, data_dir: str, args: argparse.Namespace) -> bytes:
    """convert.py's int8 model of a checkpoint (post-training quantization, calibrated on the
    training partition of data_dir)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), *DS_CNN_S_FLAGS, "--data_url", "",
                    "--data_dir", data_dir, "--wanted_words", KEYWORDS, "--seed", str(args.seed),
                    "--checkpoint", checkpoint, "--output_file", output_file], check=True)
    with open(output_file, "rb") as handle:
        return handle.read()


def main(args: argparse.Namespace) -> None:
    for path in (ARM_CHECKPOINT, DEV_DIR, UNKNOWN_DIR, NOISE_DIR, os.path.join(ROOT, "convert.py")):
        if not os.path.exists(path):
            raise cli.UsageError(f"{path} is missing: this benchmark needs it")
    known = optimization_stages.TECHNIQUES
    unknown = [technique for technique in args.techniques if technique not in known]
    if unknown:
        raise cli.UsageError(f"--techniques: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    data_dir = prepare_data(args.work_dir, args.clips_per_word, args.seed)
    first = optimize_args(args, data_dir, args.techniques[0])
    model_settings = input_data.model_settings_from_flags(first)
    words_list = input_data.prepare_words_list(input_data.wanted_words_from_flags(first))
    clips, labels, _ = input_data.load_evaluation_folder(DEV_DIR, words_list, model_settings)
    dev = (features.Fingerprinter(model_settings)(clips), labels)
    tflite_dir = os.path.join(args.work_dir, "tflite")

    def plain_model(checkpoint: str) -> models.tf.keras.Model:
        model = models.create_model(model_settings, first.model_architecture, first.model_size_info)
        checkpoints.load_weights(model, checkpoint)
        return model

    start_ptq = convert(ARM_CHECKPOINT, os.path.join(tflite_dir, "start.tflite"), data_dir, args)
    rows = [measure("start (Arm checkpoint)", START_DATA, plain_model(ARM_CHECKPOINT), start_ptq, dev)]
    for technique in args.techniques:
        outcome = optimization.optimize(optimize_args(args, data_dir, technique))
        prefix = outcome.prefix
        content = convert(prefix, os.path.join(tflite_dir, f"{technique}.tflite"), data_dir, args)
        rows.append(measure(technique, FINE_TUNING_DATA, plain_model(prefix), content, dev))
        if outcome.int8_content is not None:
            rows.append(measure(f"{technique} (QAT .tflite)", FINE_TUNING_DATA, None, outcome.int8_content, dev))
        print("\n" + format_table(rows, len(labels)), flush=True)
    table = format_table(rows, len(labels))
    cli.write_atomically(os.path.join(args.work_dir, "bench_optimize.txt"), (table + "\n").encode())
    print(f"\nsteps per stage: {args.steps}, batch size {args.batch_size}, {args.clips_per_word} "
          f"synthesized clips per keyword; the int8 models are convert.py's (post-training "
          f"quantization calibrated on training clips), except the '(QAT .tflite)' rows")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=cli.positive_int, default=400,
                        help="Fine-tuning steps per stage (optimize.py's default is 4000).")
    parser.add_argument("--techniques", type=cli.comma_list(str), default=list(optimization_stages.TECHNIQUES),
                        help="Comma-separated techniques to run, in this order.")
    parser.add_argument("--batch_size", type=cli.positive_int, default=100, help="Training batch size.")
    parser.add_argument("--clips_per_word", type=cli.positive_int, default=150,
                        help="Synthesized clips per keyword.")
    parser.add_argument("--work_dir", default="/tmp/bench_optimize",
                        help="Where data, training state and the table go; a rerun continues there.")
    parser.add_argument("--seed", type=int, default=59185, help="Seed of the data and the training.")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
