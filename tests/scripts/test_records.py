"""The sharded data form: written once, read back with the in-memory path's partitions,
labels, clips and fingerprints; a training stream that resumes at any step and that splits
its shards between workers."""
import numpy as np
import pytest
import tensorflow as tf

import prepare_data
import train
from kws import cli
from kws.data import dataset
from kws.data import shards as records
from kws.data.speech_commands import PARTITIONS

from conftest import TINY_FEATURE_FLAGS, WANTED, ds_cnn_settings, processor


@pytest.fixture(scope="module")
def shards(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards") / "set"
    args = prepare_data.build_parser().parse_args(
        ["--data_url", "", "--data_dir", str(data_dir), "--wanted_words", ",".join(WANTED),
         "--shards_dir", str(folder), "--clips_per_shard", "7", "--seed", "5", *TINY_FEATURE_FLAGS])
    records.write_shards(dataset.DataSettings.from_flags(args), args.shards_dir, args.clips_per_shard,
                         ds_cnn_settings())
    return folder


def sharded(folder, *flags):
    args = train.build_parser().parse_args(["--shards_dir", str(folder), "--wanted_words",
                                            ",".join(WANTED), "--seed", "5", *TINY_FEATURE_FLAGS, *flags])
    return records.ShardedData(str(folder), dataset.DataSettings.from_flags(args), ds_cnn_settings())


def test_shards_hold_the_in_memory_partitions_labels_and_clips(data_dir, shards):
    memory = processor(data_dir, seed=5)
    data = sharded(shards)
    for partition in PARTITIONS:
        chunks = list(data.clips(partition, chunk=5))
        clips = np.concatenate([c for c, _ in chunks])
        labels = np.concatenate([l for _, l in chunks])
        np.testing.assert_array_equal(labels, memory.labels[partition])
        np.testing.assert_array_equal(clips, memory.audio[partition][memory.rows[partition]])
        assert data.set_size(partition) == memory.set_size(partition)
    for partition in ("validation", "testing"):
        np.testing.assert_allclose(data.fingerprints(partition)[0], memory.fingerprints(partition)[0],
                                   rtol=0, atol=1e-9)


def test_shards_are_written_once(data_dir, shards):
    args = prepare_data.build_parser().parse_args(
        ["--data_url", "", "--data_dir", str(data_dir), "--wanted_words", ",".join(WANTED),
         "--shards_dir", str(shards)])
    with pytest.raises(cli.UsageError, match="already holds shards"):
        records.write_shards(dataset.DataSettings.from_flags(args), args.shards_dir,
                             args.clips_per_shard, ds_cnn_settings())


def test_other_labels_than_the_shards_are_a_usage_error(shards):
    args = train.build_parser().parse_args(["--shards_dir", str(shards), "--wanted_words", "yes,no"])
    with pytest.raises(cli.UsageError, match="--wanted_words yes,no differs"):
        records.ShardedData(str(shards), dataset.DataSettings.from_flags(args), ds_cnn_settings())


def batches(dataset, count):
    return [(tf.nest.map_structure(lambda t: t.numpy(), x), labels.numpy())
            for x, labels in dataset.take(count)]


def test_a_resumed_stream_sees_the_batches_of_an_uninterrupted_one(shards):
    data = sharded(shards, "--time_masks", "1", "--time_mask_max", "4")
    training = data.set_size("training")
    steps = training // 8 + 3  # past an epoch's end
    whole = batches(data.training_dataset(8), steps)
    resumed = batches(data.training_dataset(8, start_step=steps - 2), 2)
    for (x, labels), (x2, labels2) in zip(whole[-2:], resumed):
        np.testing.assert_array_equal(labels, labels2)
        np.testing.assert_array_equal(x, x2)
    first_epoch = np.concatenate([labels for _, labels in whole])[:training]
    assert sorted(first_epoch) == sorted(np.concatenate([l for _, l in data.clips("training")]))


def test_workers_read_their_own_shards(shards):
    data = sharded(shards, "--time_shift_ms", "0", "--background_frequency", "0")
    files, counts = data.shards("training")
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=2)
        own = sum(counts[worker::2])
        read = batches(data.worker_dataset(context, 2, 0, True), own)  # one epoch of 1-clip batches
        audio = np.concatenate([x["audio"][labels > 0] for x, labels in read])
        seen.append({bytes(np.round(clip * 32768).astype(np.int16)) for clip in audio})
    assert not seen[0] & seen[1]
    every = {bytes(clip) for clips, labels in data.clips("training") for clip in clips[labels > 0]}
    assert seen[0] | seen[1] == every
