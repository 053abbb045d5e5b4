"""The whole workflow on a small synthesized data set, with no network.

    python quickstart.py

Synthesizes keyword speech with espeak-ng, trains a small DS-CNN for a few
hundred steps, tests the checkpoint, converts it to an int8 .tflite, and
evaluates that file — each step the same command a user would type, printed
before it runs. Everything goes to --work_dir.
"""
import argparse
import glob
import os
import shlex
import subprocess
import sys

from kws import cli

DS_CNN_FLAGS = ["--model_architecture", "ds_cnn", "--model_size_info",
                "5", "64", "10", "4", "2", "2", "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]


def run_step(command: list) -> None:
    """Prints a command as a user would type it, then runs it; stops on failure."""
    print("\n$ " + " ".join(shlex.quote(part) for part in command), flush=True)
    result = subprocess.run([sys.executable] + command[1:] if command[0] == "python" else command)
    if result.returncode != 0:
        raise cli.UsageError(f"step failed with exit code {result.returncode}: {' '.join(command[:2])}")


def main(args: argparse.Namespace) -> None:
    data_dir = os.path.join(args.work_dir, "data")
    train_dir = os.path.join(args.work_dir, "train")
    data_flags = ["--data_url", "", "--data_dir", data_dir, "--seed", str(args.seed)]
    run_step(["python", "synthesize_dataset.py", "--output_dir", data_dir,
              "--clips_per_word", str(args.clips_per_word), "--seed", str(args.seed)])
    run_step(["python", "train.py", *DS_CNN_FLAGS, *data_flags, "--train_dir", train_dir,
              "--summaries_dir", os.path.join(args.work_dir, "logs"),
              "--how_many_training_steps", str(args.steps), "--learning_rate", "0.001",
              "--eval_step_interval", str(max(1, args.steps // 3))])
    best = sorted(glob.glob(os.path.join(train_dir, "best", "*.index")))
    if not best:
        raise cli.UsageError(f"train.py saved no checkpoint under {train_dir}/best")
    checkpoint = best[-1][:-len(".index")]
    run_step(["python", "test.py", *DS_CNN_FLAGS, *data_flags, "--checkpoint", checkpoint])
    tflite_path = os.path.join(args.work_dir, "ds_cnn_quantized.tflite")
    run_step(["python", "convert.py", *DS_CNN_FLAGS, *data_flags, "--checkpoint", checkpoint,
              "--inference_type", "int8", "--output_file", tflite_path])
    run_step(["python", "test_tflite.py", *DS_CNN_FLAGS[-6:], *data_flags, "--tflite_path", tflite_path])


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="/tmp/kws_quickstart", help="Where everything is written.")
    parser.add_argument("--clips_per_word", type=cli.positive_int, default=60,
                        help="Synthesized clips per word.")
    parser.add_argument("--steps", type=cli.positive_int, default=600, help="Training steps.")
    parser.add_argument("--seed", type=int, default=59185, help="Seed of every step.")
    return parser


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    cli.run(main, build_parser())
