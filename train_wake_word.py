"""Trains a wake-word detector from a typed word (and a few recordings) on a frozen backbone.

    python train_wake_word.py --wake_word happy --output_dir work/happy
    python train_wake_word.py --wake_word happy --recordings my_clips/ --output_dir work/happy

Synthesizes the word (espeak-ng and Piper, every voice and variant, augmented),
takes negatives from real speech of other words (--data_dir, without the word),
the noise recordings and synthesized near misses (words that sound alike), trains
a small head on the backbone's embedding (--backbone: a keyword model train.py
trained), chooses the threshold for --false_alarms_per_hour on a negative stream,
and writes <output_dir>/<word>.tflite: one int8 model of backbone and head
(streaming where the architecture allows) with the threshold in its metadata, so
that `test_streaming_accuracy.py --tflite_path <it> --wav W --ground_truth G` needs
no other flag; then its deployment report and a run under TFLM. Interrupted, the
same command goes on from the last finished stage (kws/wake_word/stages.py lists them).
"""
import argparse
from typing import Callable

from kws import cli
from kws.wake_word import stages


def main(args: argparse.Namespace, say: Callable[[str], None] = print) -> str:
    return stages.build(stages.Settings.from_flags(args), args.output_dir, args.jobs, say)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    stages.add_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
