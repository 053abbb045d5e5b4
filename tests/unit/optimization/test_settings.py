"""settings: optimize.py's flags become typed, frozen settings, checked once at the door."""
import dataclasses
import os

import pytest

from kws import cli
from kws.optimization import run as optimization
from kws.optimization.settings import Output, Settings


def parser():
    """optimize.py's flags."""
    flags = cli.make_parser("optimize.py")
    optimization.add_flags(flags)
    return flags


def parse(*flags):
    return parser().parse_args(["--checkpoint", "start.ckpt", *map(str, flags)])


def test_every_group_is_built_from_its_flags():
    settings = Settings.from_flags(parse(
        "--model_architecture", "dnn", "--model_size_info", 8, 8, "--wanted_words", "yes,no",
        "--dct_coefficient_count", 10, "--technique", "prune_cluster", "--number_of_clusters", 4,
        "--cluster_centroids_init", "linear", "--initial_sparsity", 0.25, "--final_sparsity", 0.5,
        "--pruning_begin_step", 2, "--pruning_end_step", 10, "--pruning_frequency", 4,
        "--input_clip_percentile", 2, "--how_many_training_steps", "6,6", "--learning_rate",
        "0.01,0.001", "--batch_size", 8, "--eval_step_interval", 3, "--seed", 7,
        "--train_dir", "out", "--summaries_dir", ""))
    assert settings.checkpoint == "start.ckpt"
    assert (settings.model.architecture, settings.model.size_info) == ("dnn", (8, 8))
    assert settings.model.model_settings.dct_coefficient_count == 10
    technique = settings.technique
    assert technique.name == "prune_cluster"
    assert [stage.folder for stage in technique.stages] == ["prune", "cluster"]
    assert (technique.clustering.number_of_clusters, technique.clustering.centroids_init) == (4, "linear")
    pruning = technique.pruning
    assert (pruning.initial_sparsity, pruning.final_sparsity, pruning.frequency) == (0.25, 0.5, 4)
    assert (pruning.begin_step, pruning.end_step, pruning.stage_steps) == (2, 10, 12)
    assert pruning.window() == (2, 10)
    assert technique.calibration.input_clip_percentile == 2
    tuning = settings.fine_tuning
    assert (tuning.steps, tuning.learning_rates) == ((6, 6), (0.01, 0.001))
    assert (tuning.batch_size, tuning.eval_step_interval, tuning.seed) == (8, 3, 7)
    assert settings.output == Output("out", "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.technique = None


def test_the_defaults_are_the_flags_defaults():
    settings = Settings.from_flags(parse())
    assert settings.technique.name == "cluster"
    assert settings.model.size_info is None  # the architecture's default size
    assert settings.technique.pruning.window() == (0, 2600)  # two thirds of 4000, by 100
    assert settings.output == Output("/tmp/speech_commands_optimize", "/tmp/optimize_logs")


def test_each_stage_has_its_folders_and_the_trainer_its_settings():
    settings = Settings.from_flags(parse("--technique", "prune_cluster_qat", "--train_dir", "out",
                                         "--summaries_dir", "logs"))
    output = optimization.stage_output(settings, 2)
    assert output == Output(os.path.join("out", "prune", "cluster"), os.path.join("logs", "prune", "cluster"))
    training = optimization.training_settings(settings, output)
    assert (training.train_dir, training.summaries_dir, training.start_checkpoint) == (
        output.train_dir, output.summaries_dir, "")
    assert (training.how_many_training_steps, training.learning_rate) == ((2000, 2000), (0.0001, 0.00002))
    assert training.model_architecture == "dnn"


@pytest.mark.parametrize("flags, message", [
    (["--final_sparsity", "0.3", "--technique", "prune"],
     "need --initial_sparsity <= --final_sparsity < 1, got 0.5 and 0.3"),
    (["--technique", "prune_cluster", "--number_of_clusters", "2"],
     "--number_of_clusters must be at least 3 for prune_cluster, got 2"),
    (["--input_clip_percentile", "20"], "--input_clip_percentile must be between 0 and 10, got 20"),
    (["--distribution_strategy", "mirrored"], "--distribution_strategy mirrored: optimize.py"),
    (["--learning_rate", "0.1"], "--how_many_training_steps and --learning_rate must list"),
])
def test_a_wrong_value_is_one_line_naming_the_flag_and_exit_2(flags, message, capsys):
    def main(args):
        Settings.from_flags(args)

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, parser(), ["--checkpoint", "start.ckpt", *flags])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and message in lines[0]
