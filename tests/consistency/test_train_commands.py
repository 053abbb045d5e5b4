"""train_commands.txt: every command parses with its script's flags and builds its model."""
import argparse
import shlex
from typing import List, Tuple

import pytest

from kws import features, tf_env, vocabulary
from kws.models import registry
from kws.training import trainer

from conftest import ROOT, load_script

tf = tf_env.import_tensorflow()

COMMANDS_FILE = ROOT / "train_commands.txt"

# Parameter counts published in kws_streaming's kws_experiments_30k_12_labels.md.
PUBLISHED_PARAMETERS = {
    "svdf": 32_000,
    "svdf_resnet": 33_000,
    "tc_resnet": 31_000,
    "mobilenet": 35_000,
    "mobilenet_v2": 28_000,
    "inception": 30_000,
    "inception_resnet": 33_000,
    "xception": 31_000,
}

PAPER_ARCHITECTURES = ("dnn", "cnn", "ds_cnn", "basic_lstm", "lstm", "gru", "crnn")


def read_commands() -> List[Tuple[int, List[str]]]:
    """(line number, argv) of every command line; comments and blank lines skipped."""
    commands = []
    for number, line in enumerate(COMMANDS_FILE.read_text().splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append((number, shlex.split(line)))
    return commands


COMMANDS = read_commands()


def command_id(number: int, argv: List[str]) -> str:
    """Test id: the line number and, for training lines, the architecture."""
    if "--model_architecture" in argv[:-1]:
        return f"line{number}-{argv[argv.index('--model_architecture') + 1]}"
    return f"line{number}"


def parse(argv: List[str]) -> Tuple[str, argparse.Namespace]:
    """(script name, parsed flags) of `python <script>.py flags...`, through the script's parser."""
    assert argv[0] == "python" and argv[1].endswith(".py"), f"not a `python <script>.py` line: {argv}"
    script = argv[1][:-len(".py")]
    parser = load_script(script).build_parser()
    try:
        return script, parser.parse_args(argv[2:])
    except SystemExit as error:
        pytest.fail(f"{' '.join(argv[:2])} rejects its flags (exit {error.code}): {shlex.join(argv)}")


def training_flags() -> List[argparse.Namespace]:
    """The parsed flags of every train.py line."""
    parsed = [parse(argv) for _, argv in COMMANDS]
    return [args for script, args in parsed if script == "train"]


def test_file_has_commands():
    assert len(COMMANDS) >= 3 * len(PAPER_ARCHITECTURES) + len(PUBLISHED_PARAMETERS)


def test_every_registered_architecture_has_a_command():
    assert set(registry.MODELS) <= {args.model_architecture for args in training_flags()}


def test_paper_architectures_have_three_sizes():
    flags = training_flags()
    for architecture in PAPER_ARCHITECTURES:
        sizes = {tuple(args.model_size_info) for args in flags if args.model_architecture == architecture}
        assert len(sizes) == 3, f"{architecture}: expected Small, Medium and Large, got {sizes}"


def test_runs_do_not_share_output_folders():
    flags = training_flags()
    for name in ("train_dir", "summaries_dir"):
        folders = [getattr(args, name) for args in flags]
        assert len(set(folders)) == len(folders), f"two commands share a --{name}"


@pytest.mark.parametrize("number, argv", COMMANDS, ids=[command_id(*command) for command in COMMANDS])
def test_command_parses_and_builds_its_model(number, argv):
    script, args = parse(argv)
    if script != "train":
        return  # evaluation or conversion lines: parsing is their check
    trainer.TrainingSettings.from_flags(args)
    tf.keras.backend.clear_session()
    label_count = len(vocabulary.words_list_from_flags(args))
    model = registry.create_model(features.settings_from_flags(args), args.model_architecture,
                                  args.model_size_info, label_count=label_count)
    assert model.output_shape == (None, label_count)
    published = PUBLISHED_PARAMETERS.get(args.model_architecture)
    if published:
        assert abs(model.count_params() - published) <= 0.1 * published, (
            f"line {number}: {args.model_architecture} has {model.count_params():,} parameters, "
            f"published {published:,}")
