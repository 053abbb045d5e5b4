"""Labels audio files with a trained model: the top labels and their scores.

    python label_wav.py --tflite_path ds_cnn_quantized.tflite --labels labels.txt \\
        --window_size_ms 40 --window_stride_ms 20 --dct_coefficient_count 10 clip.wav
    python label_wav.py --model_architecture dnn --model_size_info 128 128 128 \\
        --checkpoint <ckpt> --wav a.wav b.mp3

The model is a .tflite (--tflite_path) or a checkpoint (--checkpoint with the
model flags). Files may be in any format and at any sample rate that librosa
reads; they are converted to mono at --sample_rate and cut or padded to
--clip_duration_ms. Labels come from --labels (a file, one label per line,
like Arm's labels.txt) or else from --wanted_words.
"""
import argparse
from typing import List, Sequence

import numpy as np

import audio_io
import checkpoints
import cli
import evaluation
import features
import input_data
import models
import tflite_model
from cli import UsageError


def labels_from_flags(args: argparse.Namespace) -> List[str]:
    if args.labels:
        return tflite_model.read_labels(args.labels)
    return input_data.words_list_from_flags(args)


def top_labels(scores: np.ndarray, labels: Sequence[str], how_many: int) -> List[tuple]:
    """(label, score) of the how_many highest scores, best first."""
    order = np.argsort(-scores, kind="stable")[:how_many]
    return [(labels[i], float(scores[i])) for i in order]


def _score_function(args: argparse.Namespace, model_settings: features.ModelSettings,
                    labels: Sequence[str]):
    """fingerprints [n, size] -> scores [n, labels], from --tflite_path or --checkpoint."""
    labels_flag = "--labels" if args.labels else "--wanted_words"
    if args.tflite_path:
        if args.checkpoint:
            raise UsageError("give --tflite_path or --checkpoint, not both")
        model = tflite_model.TFLiteModel(args.tflite_path, batch_size=args.batch_size)
        model.check_settings(model_settings, args, labels, labels_flag=labels_flag)
        return model.predict
    if not args.checkpoint:
        raise UsageError("give the model to use: --tflite_path FILE, or --checkpoint with "
                         "--model_architecture and --model_size_info")
    if model_settings.label_count != len(labels):
        model_settings = features.prepare_model_settings(
            len(labels), model_settings.sample_rate, model_settings.clip_duration_ms,
            model_settings.window_size_ms, model_settings.window_stride_ms,
            model_settings.dct_coefficient_count)
    model = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    checkpoints.load_weights(model, args.checkpoint)
    return lambda fingerprints: evaluation.predict(model, fingerprints)


def main(args: argparse.Namespace) -> None:
    paths = list(args.wav or []) + list(args.files or [])
    if not paths:
        raise UsageError("no audio files: give them as arguments or with --wav")
    labels = labels_from_flags(args)
    model_settings = input_data.model_settings_from_flags(args)
    score = _score_function(args, model_settings, labels)
    clips, kept, errors = audio_io.load_clips(paths, model_settings.sample_rate,
                                           model_settings.desired_samples)
    if errors:
        if not len(clips):
            raise UsageError(errors[0] + ("" if len(errors) == 1 else f" (and {len(errors) - 1} more)"))
        audio_io.report_unreadable(errors)
    scores = score(features.Fingerprinter(model_settings).numpy(clips))
    for row, position in enumerate(kept):
        if len(paths) > 1:
            print(f"{paths[position]}:")
        for label, value in top_labels(scores[row], labels, args.how_many_labels):
            print(f"{label} (score = {value:.5f})")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="Audio files to label.")
    parser.add_argument("--wav", nargs="+", default=None, help="Audio files to label.")
    parser.add_argument("--labels", default=None,
                        help="File of labels, one per line, in the model's output order "
                             "(default: _silence_, _unknown_ and --wanted_words).")
    parser.add_argument("--how_many_labels", type=cli.positive_int, default=3,
                        help="How many labels to print per file.")
    tflite_model.add_tflite_flags(parser, required=False)
    checkpoints.add_checkpoint_flag(parser, "Checkpoint to use with the model flags, instead of "
                                    "--tflite_path", required=False)
    models.add_model_flags(parser)
    input_data.add_label_flags(parser)
    features.add_feature_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
