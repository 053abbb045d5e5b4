"""The wake-word detector: --exclude_words, near misses, the threshold chooser, the whole
train_wake_word.py command on a tiny backbone, and its bad inputs."""
import os

import numpy as np
import pytest

import cli
import data_split
import input_data
from conftest import make_speech_commands, processor


def test_excluded_words_are_in_no_partition_neither_keywords_nor_unknown(tmp_path):
    data = make_speech_commands(tmp_path / "data", ("yes", "no"), ("cat", "dog", "bed"))
    audio = processor(data, wanted_words=["yes", "no"], unknown_percentage=100,
                      exclude_words=["bed", "cat"])
    paths = [path for partition in input_data.PARTITIONS
             for path, _ in audio.data_index[partition]] + list(audio.unknown_pool)
    words = {os.path.basename(os.path.dirname(path)) for path in paths if path}
    assert words == {"yes", "no", "dog"}
    parser = cli.make_parser("data")
    input_data.add_data_flags(parser)
    input_data.add_label_flags(parser)
    args = parser.parse_args(["--data_url", "", "--data_dir", str(data), "--wanted_words", "yes,no",
                              "--exclude_words", "bed,cat", "--unknown_percentage", "100"])
    flagged = input_data.AudioProcessor.from_flags(args, audio.model_settings)
    assert flagged.data_index == audio.data_index
    keywords, unknowns = data_split.scan([str(data)], [], ["yes", "no"], 10, 10)
    assert any("/bed/" in path for part in unknowns.values() for path, _ in part)
    with pytest.raises(cli.UsageError, match="--exclude_words yes is also in --wanted_words"):
        data_split.scan([str(data)], [], ["yes", "no"], 10, 10, ["yes"])
    with pytest.raises(cli.UsageError, match="--exclude_words happy not found"):
        data_split.scan([str(data)], [], ["yes", "no"], 10, 10, ["happy"])
