"""The model that the flags name, as a scorer: fingerprints [n, size] in, scores [n, labels] out
(clips in for a raw-audio .tflite, whose takes_audio says so: streaming.takes_audio).

A .tflite (--tflite_path) or a checkpoint (--checkpoint with --model_architecture
and --model_size_info), and its labels: --labels (a file, one label per line,
like Arm's labels.txt) or else _silence_, _unknown_ and --wanted_words.
label_wav.py and test_streaming_accuracy.py take their model here.
"""
import argparse
from typing import Callable, Sequence

import numpy as np

from kws import evaluation, features, vocabulary
from kws.cli import UsageError
from kws.models import registry
from kws.runtime import tflite_model
from kws.training import checkpoints


def add_scorer_flags(parser: argparse.ArgumentParser) -> None:
    """--labels, the .tflite flags, --checkpoint, the model, label and fingerprint flags."""
    vocabulary.add_labels_file_flag(parser)
    tflite_model.add_tflite_flags(parser, required=False)
    checkpoints.add_checkpoint_flag(parser, "Checkpoint to use with the model flags, instead of "
                                    "--tflite_path", required=False)
    registry.add_model_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)


def scorer_from_flags(args: argparse.Namespace, model_settings: features.ModelSettings,
                      labels: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """fingerprints [n, size] -> scores [n, labels], from --tflite_path or --checkpoint; a
    raw-audio .tflite is its TFLiteModel, which takes clips [n, desired_samples] instead."""
    labels_flag = "--labels" if args.labels else "--wanted_words"
    if args.tflite_path:
        if args.checkpoint:
            raise UsageError("give --tflite_path or --checkpoint, not both")
        model = tflite_model.TFLiteModel(args.tflite_path, batch_size=args.batch_size,
                                         runtime=args.runtime)
        model.check_settings(model_settings, labels, labels_flag=labels_flag)
        return model
    if not args.checkpoint:
        raise UsageError("give the model to use: --tflite_path FILE, or --checkpoint with "
                         "--model_architecture and --model_size_info")
    if args.runtime != tflite_model.LITERT:
        raise UsageError(f"--runtime {args.runtime} runs a .tflite (--tflite_path), not a checkpoint")
    model = registry.create_model(model_settings, args.model_architecture, args.model_size_info,
                                  label_count=len(labels))
    checkpoints.load_weights(model, args.checkpoint)
    return lambda fingerprints: evaluation.predict(model, fingerprints)
