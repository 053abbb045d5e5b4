"""Trains a keyword-spotting model on Speech Commands (or any folder-per-word data set).

    python train.py --model_architecture dnn --model_size_info 128 128 128

The learning rate is piecewise constant: --how_many_training_steps 15000,3000
with --learning_rate 0.001,0.0001 trains 15,000 steps at 0.001, then 3,000 at
0.0001. Every --eval_step_interval steps the model is evaluated on the
validation partition, the training state (weights, optimizer, step) is saved
under --train_dir/last, and the best model so far is kept as
--train_dir/best/<architecture>_<accuracy>.ckpt. Started again with the same
--train_dir, a run continues from its last saved step. At the end the best
model is tested on the testing partition and on --test_dir when given.

--distribution_strategy mirrored|multi_worker trains on several devices or
machines (tf.distribute; the chief writes), --shards_dir streams a data set
that prepare_data.py wrote as TFRecord shards instead of holding it in memory,
--mixed_precision bfloat16 computes the step in bfloat16. --plot_dir draws the
accuracy and cross entropy against steps at the end (TensorBoard's summaries stay).
"""
import argparse

from kws import cli, evaluation, features, plots, tf_env, vocabulary
from kws.data import augmentation, dataset
from kws.data import shards as records
from kws.data import sources, speech_commands
from kws.models import registry
from kws.training import distillation, distribute
from kws.training import trainer as training

tf = tf_env.import_tensorflow()


def main(args: argparse.Namespace) -> None:
    training_settings = training.TrainingSettings.from_flags(args)
    device = distribute.DeviceSettings.from_flags(args)
    # first: a multi-worker strategy starts the runtime
    strategy = distribute.make_strategy(device.distribution_strategy)
    distribute.check_batch_size(strategy, training_settings.batch_size)
    chief = distribute.is_chief(strategy)
    tf.keras.utils.set_random_seed(args.seed)
    distribute.set_precision(device.mixed_precision)
    model_settings = features.settings_from_flags(args)
    label_count = len(vocabulary.words_list_from_flags(args))
    with strategy.scope():
        model = registry.create_model(model_settings, args.model_architecture, args.model_size_info,
                                      label_count=label_count)
    if chief:
        print(distribute.describe(strategy))
        print(registry.summary_line(model, args.model_architecture, args.model_size_info))
    data = dataset.DataSettings.from_flags(args)
    processor = sources.training_data(data, model_settings, args.shards_dir)
    if chief:
        print("Samples per partition: " + ", ".join(
            f"{name} {processor.set_size(name)}" for name in speech_commands.PARTITIONS))
    if not len(processor.fingerprints("validation")[1]) and chief:
        print("The validation partition is empty: no model selection, the last model is kept as best")
    with strategy.scope():
        teachers = distillation.load_teachers(args.teacher, model_settings, label_count)
    soft_targets = distillation.distillation_from_flags(args)
    if teachers and chief:
        print(distillation.describe(teachers, soft_targets))
    trainer = training.Trainer(model, processor, training_settings, strategy, teachers, soft_targets,
                               distribute.fingerprints_on_device(device.fingerprints_on))
    trainer.restore()
    trainer.run()
    best, results = trainer.test(data)
    if not chief:
        return
    for name, result in results.items():
        label = "test" if name == "testing" else f"--test_dir {name}"
        print(f"Final {label} accuracy = {result.accuracy:.4f} (N={result.count}) of {best}")
        print(evaluation.format_confusion_matrix(result.confusion_matrix, processor.words_list))
    plots.training_curves(args.plot_dir, trainer.history, args.model_architecture)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    speech_commands.add_data_flags(parser)
    records.add_shard_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    augmentation.add_augmentation_flags(parser)
    registry.add_model_flags(parser)
    training.add_training_flags(parser)
    distillation.add_distillation_flags(parser)
    distribute.add_distribution_flags(parser)
    plots.add_plot_flag(parser, "accuracy and cross entropy against steps at the end of the run")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
