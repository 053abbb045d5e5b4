"""Evaluates a checkpoint: accuracy and confusion matrix.

    python test.py --model_architecture dnn --model_size_info 128 128 128 --checkpoint <ckpt>

On the validation and test partitions of --data_dir, or, with --test_dir, on
an evaluation folder (one folder per label). Works with our checkpoints and
with Arm's published ones, given the flags they were trained with.
"""
import argparse
import json
from typing import Dict, Tuple

import numpy as np

import cli
import checkpoints
import input_data
import models
import train


def add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    """--output_json, shared by test.py and test_tflite.py."""
    parser.add_argument("--output_json", default=None,
                        help="Also write the figures to this JSON file: for each partition or folder, "
                             "accuracy, confusion_matrix, labels and count.")


def evaluation_sets(args: argparse.Namespace, model_settings: models.ModelSettings
                    ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Name -> (fingerprints, labels): the --test_dir folder, or validation and testing of --data_dir."""
    words_list = input_data.prepare_words_list(input_data.wanted_words_from_flags(args))
    fingerprinter = input_data.Fingerprinter(model_settings)
    if args.test_dir:
        clips, labels, _ = input_data.load_evaluation_folder(args.test_dir, words_list, model_settings,
                                                             cache_dir=args.audio_cache_dir)
        return {args.test_dir: (fingerprinter.numpy(clips), labels)}
    processor = input_data.AudioProcessor.from_flags(args, model_settings)
    sets = {}
    for name in ("validation", "testing"):
        fingerprints, labels = processor.fingerprints(name)
        if len(labels):
            sets[name] = (fingerprints, labels)
        else:
            print(f"The {name} partition of --data_dir {args.data_dir} is empty: skipped")
    if not sets:
        raise cli.UsageError(f"--data_dir {args.data_dir}: the validation and testing partitions are "
                             f"empty; nothing to evaluate (pass --test_dir, or other percentages)")
    return sets


def report(name: str, labels: np.ndarray, predictions: np.ndarray, words_list) -> dict:
    """Prints accuracy and confusion matrix of one set; returns its JSON figures."""
    matrix = train.confusion_matrix(labels, predictions, len(words_list))
    accuracy = float(np.mean(predictions == labels)) if len(labels) else 0.0
    print(f"{name}: accuracy {accuracy:.4f} (N={len(labels)})")
    print(train.format_confusion_matrix(matrix, words_list))
    return {"accuracy": accuracy, "confusion_matrix": matrix.tolist(),
            "labels": list(words_list), "count": int(len(labels))}


def write_report(path: str, figures: dict) -> None:
    """Saves the figures as JSON, atomically."""
    cli.write_atomically(path, (json.dumps(figures, indent=2) + "\n").encode())
    print(f"Wrote {path}")


def main(args: argparse.Namespace) -> None:
    model_settings = input_data.model_settings_from_flags(args)
    words_list = input_data.prepare_words_list(input_data.wanted_words_from_flags(args))
    model = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    prefix = checkpoints.load_weights(model, args.checkpoint)
    print(f"Loaded {prefix}")
    figures = {}
    for name, (fingerprints, labels) in evaluation_sets(args, model_settings).items():
        predictions = np.argmax(train.predict(model, fingerprints), axis=1)
        figures[name] = report(name, labels, predictions, words_list)
    if args.output_json:
        write_report(args.output_json, figures)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    input_data.add_data_flags(parser)
    models.add_model_flags(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="Checkpoint to evaluate: a prefix, its .index file, or a folder.")
    add_evaluation_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
