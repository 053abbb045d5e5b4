"""kws.data.dataset: the data flags as one value, and the index before any clip is read."""
import pytest

from kws.cli import UsageError
from kws.data import dataset

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
