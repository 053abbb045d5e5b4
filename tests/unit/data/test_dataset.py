"""kws.data.dataset: the data flags as one value, and the index before any clip is read."""
import pytest

from kws.cli import UsageError
from kws.data import data_split, dataset
from kws.wake_word import data as wake_word_data

from conftest import WANTED, processor


def test_the_index_is_the_processors_before_any_clip_is_read(data_dir):
    settings = dataset.DataSettings(str(data_dir), tuple(WANTED), seed=3)
    index = dataset.DataIndex.build(settings, 16000)
    loaded = processor(data_dir, seed=3)
    assert index.words_list == loaded.words_list
    assert index.data_index == loaded.data_index  # every clip of the tiny set is readable
    assert index.unknown_pool == loaded.unknown_pool and index.unknown_pool
    assert len(index.background_data) == len(loaded.background_data) > 0


def test_bad_settings_are_one_line(data_dir, tmp_path):
    with pytest.raises(UsageError, match="--seed"):
        dataset.DataIndex.build(dataset.DataSettings(str(data_dir), tuple(WANTED), seed=-1), 16000)
    with pytest.raises(UsageError, match="--extra_unknown_dirs"):
        dataset.DataIndex.build(dataset.DataSettings(
            str(data_dir), tuple(WANTED), extra_unknown_dirs=(str(tmp_path / "no"),)), 16000)
    with pytest.raises(UsageError, match="--data_dir"):
        dataset.data_dirs_from_flag(" , ")


def test_held_out_speakers_leave_training_only_and_are_the_wake_word_streams(data_dir):
    whole = dataset.DataIndex.build(dataset.DataSettings(str(data_dir), tuple(WANTED)), 16000)
    held = dataset.DataIndex.build(dataset.DataSettings(
        str(data_dir), tuple(WANTED), held_out_speaker_percentage=50), 16000)
    training = {path for path, label in whole.data_index["training"] if label >= 2}  # keywords
    kept = {path for path, label in held.data_index["training"] if label >= 2}
    left_out = training - kept
    assert kept and left_out and kept < training
    assert all(data_split.held_out_rank(path) < 50 for path in left_out)
    assert all(data_split.held_out_rank(path) >= 50 for path in kept)
    assert {data_split.speaker_of(path) for path in left_out}.isdisjoint(
        data_split.speaker_of(path) for path in kept)
    assert set(held.unknown_pool) == {path for path in whole.unknown_pool
                                      if data_split.held_out_rank(path) >= 50}
    assert held.data_index["validation"] == whole.data_index["validation"]
    for path in whole.unknown_pool:  # the wake word's threshold stream: STREAM_SPEAKER_PERCENT
        assert wake_word_data.stream_speaker(path) == (
            data_split.held_out_rank(path) < wake_word_data.STREAM_SPEAKER_PERCENT)


@pytest.mark.parametrize("percentage", [-1, 100])
def test_a_held_out_percentage_outside_0_to_100_is_one_line(data_dir, percentage):
    with pytest.raises(UsageError, match="--held_out_speaker_percentage"):
        dataset.DataIndex.build(dataset.DataSettings(
            str(data_dir), tuple(WANTED), held_out_speaker_percentage=percentage), 16000)
