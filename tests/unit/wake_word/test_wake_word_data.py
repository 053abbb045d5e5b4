"""kws/wake_word/data.py: the head's training set with the mined windows, and the clips of the
mining stream."""
import numpy as np

from kws.wake_word import data


def test_mined_windows_are_unknown_and_weigh_together_as_one_label():
    rng = np.random.default_rng(0)
    labels = np.repeat([data.SILENCE_INDEX, data.UNKNOWN_INDEX, data.WAKE_WORD_INDEX], [3, 20, 7])
    embeddings = rng.normal(size=(len(labels), 4)).astype(np.float32)
    hard = rng.normal(size=(100, 4)).astype(np.float16)
    inputs, all_labels, weights = data.training_set(embeddings, labels, hard)
    assert inputs.dtype == np.float32 and np.array_equal(inputs[30:], hard.astype(np.float32))
    assert np.array_equal(all_labels[:30], labels)
    assert (all_labels[30:] == data.UNKNOWN_INDEX).all()
    for label in range(3):  # each label weighs the same, as without mined windows
        assert np.isclose(weights[:30][labels == label].sum(), 10)
    assert np.allclose(weights[:30], data.label_weights(labels))
    assert np.isclose(weights[30:].sum(), data.HARD_NEGATIVE_WEIGHT * 10)
    assert np.ptp(weights[30:]) == 0


def test_the_mining_stream_takes_the_clips_that_are_no_example():
    paths = [f"dog/s{i}_nohash_0.wav" for i in range(10)]
    examples = data.sample(paths, 6, 0)
    mined = data.mining_paths(paths, examples)
    assert sorted(mined + examples) == sorted(paths)
    assert data.mining_paths(paths, paths) == paths  # every clip is an example: all of them
