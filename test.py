"""Evaluates a checkpoint: accuracy and confusion matrix.

    python test.py --model_architecture dnn --model_size_info 128 128 128 --checkpoint <ckpt>

On the validation and test partitions of --data_dir, or, with --test_dir, on
an evaluation folder (one folder per label). Works with our checkpoints and
with Arm's published ones, given the flags they were trained with. --plot_dir
draws each confusion matrix as a PNG.
"""
import argparse
import os

from kws import cli, evaluation, features, plots, vocabulary
from kws.data import speech_commands
from kws.models import registry
from kws.training import checkpoints


def main(args: argparse.Namespace) -> None:
    model_settings = features.settings_from_flags(args)
    words_list = vocabulary.words_list_from_flags(args)
    model = registry.create_model(model_settings, args.model_architecture, args.model_size_info,
                                  label_count=len(words_list))
    prefix = checkpoints.load_weights(model, args.checkpoint)
    print(f"Loaded {prefix}")
    data = speech_commands.DataSource.from_flags(args, model_settings)
    sets = evaluation.test_sets(data)
    figures = {name: evaluation.report(name, evaluation.evaluate(model, fingerprints, labels,
                                                                 len(words_list)), words_list)
               for name, (fingerprints, labels) in sets.items()}
    if args.output_json:
        evaluation.write_json(args.output_json, figures)
    plots.confusion_matrices(args.plot_dir, figures, os.path.basename(prefix))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    registry.add_model_flags(parser)
    checkpoints.add_checkpoint_flag(parser, "Checkpoint to evaluate")
    evaluation.add_evaluation_flags(parser)
    plots.add_plot_flag(parser, "the confusion matrix of each set")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
