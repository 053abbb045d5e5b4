"""Evaluation: one way to score a Keras or .tflite model on a set of fingerprints (or of clips,
for a raw-audio .tflite: convert.py --include_features).

train.py (validation and test), test.py, test_tflite.py, convert.py (the
float model beside the converted one) and optimize.py (before and after) all
measure accuracy here, on the sets evaluation_sets() picks from the data settings.
"""
import argparse
import dataclasses
import json
from typing import Dict, Sequence, Tuple

import numpy as np

from kws import cli, features, vocabulary
from kws.data import speech_commands
from kws.runtime.tflite_model import TFLiteModel

PREDICT_BATCH_SIZE = 500


def add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    """--output_json (test.py and test_tflite.py)."""
    parser.add_argument("--output_json", default=None,
                        help="Also write the figures to this JSON file: for each partition or folder, "
                             "accuracy, confusion_matrix, labels and count.")


def predict(model, fingerprints: np.ndarray) -> np.ndarray:
    """Scores [n, labels] of a tf.keras model (in inference mode) or a TFLiteModel (of clips
    when it takes audio).

    Keras keeps the compiled predict function on the model, so evaluating at
    every --eval_step_interval does not trace the model again.
    """
    if isinstance(model, TFLiteModel):
        return model.predict(fingerprints)
    if not len(fingerprints):
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return model.predict(fingerprints, batch_size=PREDICT_BATCH_SIZE, verbose=0)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, label_count: int) -> np.ndarray:
    """Rows: true label; columns: predicted label."""
    matrix = np.zeros((label_count, label_count), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def format_confusion_matrix(matrix: np.ndarray, words_list: Sequence[str]) -> str:
    """The confusion matrix with label names, one row per true label."""
    width = max(6, max(len(str(matrix.max())), 1) + 1)
    header = " " * 12 + "".join(f"{word[:width - 1]:>{width}}" for word in words_list)
    rows = [f"{word[:11]:<12}" + "".join(f"{count:>{width}}" for count in row)
            for word, row in zip(words_list, matrix)]
    return "\n".join([header] + rows)


@dataclasses.dataclass
class Evaluation:
    """What a model did on one set."""

    accuracy: float
    confusion_matrix: np.ndarray
    count: int

    def figures(self, words_list: Sequence[str]) -> dict:
        """The JSON figures of --output_json and --report_json."""
        return {"accuracy": self.accuracy, "confusion_matrix": self.confusion_matrix.tolist(),
                "labels": list(words_list), "count": self.count}


def evaluate(model, fingerprints: np.ndarray, labels: np.ndarray, label_count: int) -> Evaluation:
    """Top-1 accuracy and confusion matrix of a Keras model or TFLiteModel."""
    predictions = np.argmax(predict(model, fingerprints), axis=1)
    accuracy = float(np.mean(predictions == labels)) if len(labels) else 0.0
    return Evaluation(accuracy, confusion_matrix(labels, predictions, label_count), int(len(labels)))


def report(name: str, result: Evaluation, words_list: Sequence[str]) -> dict:
    """Prints the accuracy and confusion matrix of one set; returns its JSON figures."""
    print(f"{name}: accuracy {result.accuracy:.4f} (N={result.count})")
    print(format_confusion_matrix(result.confusion_matrix, words_list))
    return result.figures(words_list)


def write_json(path: str, figures: dict) -> None:
    """Saves figures as JSON, atomically."""
    cli.write_atomically(path, (json.dumps(figures, indent=2) + "\n").encode())
    print(f"Wrote {path}")


def evaluation_sets(data: speech_commands.DataSource, partitions: Sequence[str],
                    audio: bool = False) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Name -> (fingerprints, labels), or (int16 clips, labels) when audio: the --test_dir
    folder when given (named by its path), then each of partitions of --data_dir that holds
    samples."""
    settings, model_settings = data.settings, data.model_settings
    sets = {}
    if settings.test_dir:
        words_list = vocabulary.prepare_words_list(settings.wanted_words)
        clips, labels, _ = speech_commands.load_evaluation_folder(
            settings.test_dir, words_list, model_settings, cache_dir=settings.audio_cache_dir)
        sets[settings.test_dir] = (clips if audio else features.Fingerprinter(model_settings)(clips),
                                   labels)
    for name in partitions:
        processor = data.processor
        inputs, labels = processor.clips(name) if audio else processor.fingerprints(name)
        if len(labels):
            sets[name] = (inputs, labels)
        else:
            print(f"The {name} partition of --data_dir {settings.data_dir} is empty: skipped")
    return sets


def test_sets(data: speech_commands.DataSource, audio: bool = False
              ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """What test.py and test_tflite.py evaluate (clips when audio): the --test_dir folder, else
    the validation and testing partitions of --data_dir; UsageError when there is nothing to
    evaluate."""
    settings = data.settings
    sets = evaluation_sets(data, [] if settings.test_dir else ["validation", "testing"], audio)
    if not sets:
        raise cli.UsageError(f"--data_dir {settings.data_dir}: the validation and testing partitions "
                             f"are empty; nothing to evaluate (pass --test_dir, or other percentages)")
    return sets


def compare_accuracy(data: speech_commands.DataSource, model, tflite, tflite_name: str,
                     words_list: Sequence[str]) -> dict:
    """convert.py's figures: the float Keras model and its .tflite (named tflite_name; fed
    clips when it takes audio) on --test_dir, else on the testing partition; prints them."""
    try:
        partitions = [] if data.settings.test_dir or not data.usable() else ["testing"]
        sets = evaluation_sets(data, partitions, audio=tflite.takes_audio)
    except cli.UsageError as error:  # the model is written; only the comparison is missing
        print(f"Accuracy not measured: {error}")
        return {"error": str(error)}
    if not sets:
        print("No --test_dir and no test partition in --data_dir: accuracy not measured")
        return {}
    name, (inputs, labels) = next(iter(sets.items()))
    fingerprints = features.Fingerprinter(data.model_settings)(inputs) if tflite.takes_audio \
        else inputs
    before = evaluate(model, fingerprints, labels, len(words_list))
    after = evaluate(tflite, inputs, labels, len(words_list))
    print(f"Accuracy on {name} (N={after.count}): float Keras model {before.accuracy:.4f}, "
          f"{tflite_name} {after.accuracy:.4f} "
          f"({100 * (after.accuracy - before.accuracy):+.2f} points)")
    return {"set": name, "count": after.count, "float": before.accuracy, "tflite": after.accuracy,
            "labels": list(words_list), "confusion_matrix": after.confusion_matrix.tolist()}
