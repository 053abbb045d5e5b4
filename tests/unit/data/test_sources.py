"""kws.data.sources: both training sources keep to the declared interface."""
import inspect

import pytest

from kws import cli, features, vocabulary
from kws.data import dataset, shards, sources, speech_commands

from conftest import TINY_FEATURE_FLAGS, WANTED, make_speech_commands


def parse(*argv, writing=False):
    parser = cli.make_parser("sources")
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    shards.add_shard_flags(parser, writing=writing)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def flags(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    data_dir = make_speech_commands(root / "data")
    return ["--data_url", "", "--data_dir", str(data_dir), "--wanted_words", ",".join(WANTED),
            *TINY_FEATURE_FLAGS], root


def test_both_sources_are_training_data_and_only_shards_serve_workers(flags):
    argv, root = flags
    args = parse(*argv)
    settings = features.settings_from_flags(args)
    data = dataset.DataSettings.from_flags(args)
    memory = sources.training_data(data, settings)
    assert isinstance(memory, speech_commands.AudioProcessor)
    shards.write_shards(data, str(root / "shards"), 1000, settings)
    sharded = sources.training_data(data, settings, str(root / "shards"))
    assert isinstance(sharded, shards.ShardedData)
    for data in (memory, sharded):
        assert isinstance(data, sources.TrainingData)
        assert data.words_list == memory.words_list
        assert data.set_size("validation") == memory.set_size("validation")
    assert isinstance(sharded, sources.ShardedSource)
    assert not isinstance(memory, sources.ShardedSource)


def test_the_sources_take_the_declared_parameters():
    declared = inspect.signature(sources.TrainingData.training_dataset).parameters
    for source in (speech_commands.AudioProcessor, shards.ShardedData):
        assert list(inspect.signature(source.training_dataset).parameters) == list(declared)
