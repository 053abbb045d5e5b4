"""Our test.py path on Arm's 8 published float checkpoints, against the accuracies Arm's own builder gets.

    python bench/bench_arm_reference.py [--test_dir DIR] [--reference_dir DIR]

Each checkpoint is built with registry.create_model from the flags it was trained
with, loaded with checkpoints.load_weights and run with evaluation.predict on the
fingerprints (speech_commands.load_evaluation_folder + Fingerprinter) of the 2,738
clips of speech_commands_test_v0.02_dev. The reference figures are those of
../shared/README.md (the checkpoints in Arm's builder, same clips, same
features); every difference must be within --tolerance. Exit status 1 otherwise.
"""
import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Dict, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kws import cli  # noqa: E402
from kws import vocabulary  # noqa: E402
from kws.cli import UsageError  # noqa: E402

SHARED = ROOT.parent / "shared"


@dataclasses.dataclass(frozen=True)
class ArmCheckpoint:
    """One published checkpoint, the flags it was trained with and its reference accuracy."""

    name: str
    architecture: str
    model_size_info: Tuple[int, ...]
    window_stride_ms: int
    checkpoint: str  # prefix, relative to the reference folder
    reference_accuracy: float


def sizes(text: str) -> Tuple[int, ...]:
    return tuple(int(value) for value in text.split())


CHECKPOINTS: Sequence[ArmCheckpoint] = (
    ArmCheckpoint("DS_CNN_S", "ds_cnn", sizes("5 64 10 4 2 2 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1"),
                  20, "DS_CNN/DS_CNN_S/ckpt/ds_cnn_0.94_ckpt", 0.9116),
    ArmCheckpoint("DS_CNN_M", "ds_cnn",
                  sizes("5 172 10 4 2 1 172 3 3 2 2 172 3 3 1 1 172 3 3 1 1 172 3 3 1 1"),
                  20, "DS_CNN/DS_CNN_M/ckpt/ds_cnn_0.95_ckpt", 0.9145),
    ArmCheckpoint("CNN_S", "cnn", sizes("28 10 4 1 1 30 10 4 2 1 16 128"),
                  20, "CNN/CNN_S/ckpt/cnn_0.92_ckpt", 0.9028),
    ArmCheckpoint("CNN_M", "cnn", sizes("64 10 4 1 1 48 10 4 2 1 16 128"),
                  20, "CNN/CNN_M/ckpt/cnn_0.93_ckpt", 0.8981),
    ArmCheckpoint("DNN_S", "dnn", sizes("144 144 144"), 40, "DNN/DNN_S/ckpt/dnn_0.84_ckpt", 0.8221),
    ArmCheckpoint("DNN_M", "dnn", sizes("256 256 256"), 40, "DNN/DNN_M/ckpt/dnn_0.86_ckpt", 0.8305),
    ArmCheckpoint("Basic_LSTM_S", "basic_lstm", (118,), 20,
                  "BASIC_LSTM/Basic_LSTM_S/ckpt/basic_lstm_0.930_ckpt", 0.8868),
    ArmCheckpoint("Basic_LSTM_M", "basic_lstm", (214,), 20,
                  "BASIC_LSTM/Basic_LSTM_M/ckpt/basic_lstm_0.936_ckpt", 0.9003),
)


def make_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--test_dir", default=str(SHARED / "data" / "speech_commands_test_v0.02_dev"),
                        help="Evaluation folder: one folder per label.")
    parser.add_argument("--reference_dir", default=str(SHARED / "reference" / "arm_pretrained"),
                        help="Arm's published registry.")
    parser.add_argument("--tolerance", type=float, default=0.002,
                        help="Largest allowed |our accuracy - reference|.")
    return parser


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from kws import evaluation, features
    from kws.data import speech_commands
    from kws.models import registry
    from kws.training import checkpoints

    for flag, folder in (("--test_dir", args.test_dir), ("--reference_dir", args.reference_dir)):
        if not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder} is not a folder (it lives in ../shared)")
    words_list = vocabulary.prepare_words_list(vocabulary.DEFAULT_WANTED_WORDS.split(","))
    fingerprints: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}  # per window stride
    print(f"{'model':14s} {'ours':>7s} {'Arm':>7s} {'diff':>8s}  clips   seconds")
    worst = 0.0
    for entry in CHECKPOINTS:
        start = time.perf_counter()
        settings = features.prepare_model_settings(16000, 1000, 40, entry.window_stride_ms, 10)
        if entry.window_stride_ms not in fingerprints:
            clips, labels, _ = speech_commands.load_evaluation_folder(args.test_dir, words_list, settings)
            fingerprints[entry.window_stride_ms] = (features.Fingerprinter(settings)(clips), labels)
        inputs, labels = fingerprints[entry.window_stride_ms]
        model = registry.create_model(settings, entry.architecture, entry.model_size_info,
                                      label_count=len(words_list))
        checkpoints.load_weights(model, os.path.join(args.reference_dir, entry.checkpoint))
        accuracy = float(np.mean(np.argmax(evaluation.predict(model, inputs), axis=1) == labels))
        difference = accuracy - entry.reference_accuracy
        worst = max(worst, abs(difference))
        print(f"{entry.name:14s} {accuracy:7.4f} {entry.reference_accuracy:7.4f} {difference:+8.4f}  "
              f"{len(labels)}  {time.perf_counter() - start:6.1f}", flush=True)
    verdict = "within" if worst <= args.tolerance else "OUTSIDE"
    print(f"largest |difference| {worst:.4f}: {verdict} the tolerance of {args.tolerance}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    cli.run(main, make_parser())
