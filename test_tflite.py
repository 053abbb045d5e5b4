"""Evaluates a .tflite model: accuracy and confusion matrix.

    python test_tflite.py --tflite_path dnn_quantized.tflite --test_dir <folder>

Any keyword-spotting .tflite whose input is the MFCC fingerprint and whose
output is one score per label: ours or Arm's, float or quantized input and
output (the scale and zero point are read from the model), batch 1 or any
batch. A .tflite that convert.py wrote carries its labels and fingerprint
settings (kws/runtime/metadata.py): no flag is needed, and one given that disagrees
is a warning (--force_flags to use it). Otherwise the fingerprint comes from
the fingerprint flags (e.g. Arm's models need --window_size_ms 40
--window_stride_ms 20 --dct_coefficient_count 10, DNNs --window_stride_ms 40);
when the model's input size contradicts them, the error says which settings
would fit. A raw-audio model (convert.py
--include_features), recognised by its input of one clip of audio, is fed the
clips themselves. Evaluates on the --test_dir folder, or on the validation and
test partitions of --data_dir; --plot_dir draws each confusion matrix as a PNG.

One interpreter serves the whole run: the fingerprints are computed in
batches once, and the model runs on batches of them when its input can be
resized (checked against batch 1 on the first clips), one clip at a time otherwise.
"""
import argparse
import os
import time

from kws import cli, evaluation, features, plots, vocabulary
from kws.data import speech_commands
from kws.runtime import metadata, tflite_model


def main(args: argparse.Namespace) -> None:
    args = cli.replace_flags(args, metadata.carried_flags_from_flags(args))
    model_settings = features.settings_from_flags(args)
    words_list = vocabulary.words_list_from_flags(args)
    model = tflite_model.TFLiteModel(args.tflite_path, batch_size=args.batch_size,
                                     runtime=args.runtime)
    model.check_settings(model_settings, words_list)
    audio = " (raw audio: the model computes the fingerprint)" if model.takes_audio else ""
    print(f"Model {args.tflite_path}: input {model.input_type}{model.input_shape}{audio}, "
          f"output {model.output_type}[{model.label_count}]")
    data = speech_commands.DataSource.from_flags(args, model_settings)
    sets = evaluation.test_sets(data, audio=model.takes_audio)
    figures = {}
    for name, (inputs, labels) in sets.items():
        start = time.perf_counter()
        result = evaluation.evaluate(model, inputs, labels, len(words_list))
        elapsed = time.perf_counter() - start
        figures[name] = evaluation.report(name, result, words_list)
        mode = f"batches of {model.batch_size}" if model.batched else "one clip at a time"
        print(f"({len(labels)} clips in {elapsed:.2f} s, {mode})")
    if args.output_json:
        evaluation.write_json(args.output_json, figures)
    plots.confusion_matrices(args.plot_dir, figures, os.path.basename(args.tflite_path))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    tflite_model.add_tflite_flags(parser)
    evaluation.add_evaluation_flags(parser)
    plots.add_plot_flag(parser, "the confusion matrix of each set")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
