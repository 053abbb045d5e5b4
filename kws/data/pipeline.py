"""The training batches as tf.data: augmented audio -> what the training step takes.

Both sources of training audio, input_data.AudioProcessor (clips in memory, batches from a
Python generator) and records.ShardedData (clips streamed from TFRecord shards), give
batches of augmented float32 audio with their labels, plus SpecAugment keep-masks when
those are on. `model_inputs` turns them into (x, labels) for the training step: x is the
fingerprints (graph_features.graph_fingerprints, computed in the pipeline on the host's cores),
or, with on_device, a dict of the audio (and masks) whose fingerprints the step computes
itself (`fingerprints_of`), on the accelerator, so that the MFCC does not keep a GPU waiting.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from kws import graph_features, tf_env
from kws.features import ModelSettings

tf = tf_env.lazy_tensorflow()

Batches = Callable[[], Iterator[Tuple[np.ndarray, np.ndarray]]]
Masks = Callable[[int, int], np.ndarray]  # (batch_size, step) -> [batch, frames, coefficients]


def element_spec(batch_size: int, settings: ModelSettings, masks: bool) -> tuple:
    """The TensorSpecs of (audio, [masks,] labels) batches."""
    audio = tf.TensorSpec([batch_size, settings.desired_samples], tf.float32)
    labels = tf.TensorSpec([batch_size], tf.int32)
    if not masks:
        return audio, labels
    return audio, tf.TensorSpec([batch_size, settings.spectrogram_length,
                                 settings.dct_coefficient_count], tf.float32), labels


def from_generator(batches: Batches, batch_size: int, settings: ModelSettings,
                   masks: Optional[Masks] = None, start_step: int = 0) -> tf.data.Dataset:
    """(audio, [masks,] labels) from a generator of augmented (audio, labels) batches, the
    first being step start_step's; masks(batch_size, step) when SpecAugment is on."""
    if masks is None:
        return tf.data.Dataset.from_generator(batches, output_signature=element_spec(
            batch_size, settings, False))

    def with_masks():
        for step, (audio, labels) in enumerate(batches(), start_step):
            yield audio, masks(batch_size, step), labels

    return tf.data.Dataset.from_generator(with_masks, output_signature=element_spec(
        batch_size, settings, True))


def from_fingerprint_generator(batches: Batches, batch_size: int,
                               settings: Sequence[ModelSettings]) -> tf.data.Dataset:
    """(x, labels) from a generator of batches of training fingerprints: x the fingerprints of
    settings[0], or with teachers (settings[1:]) the tuple of every settings' fingerprints."""
    specs = tuple(tf.TensorSpec([batch_size, one.fingerprint_size], tf.float32) for one in settings)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(
        specs[0] if len(specs) == 1 else specs, tf.TensorSpec([batch_size], tf.int32)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def fingerprints_of(x: Union[tf.Tensor, tuple, dict], settings: ModelSettings) -> tf.Tensor:
    """The fingerprints [batch, fingerprint_size] of a model input x: x itself when the
    pipeline computed them (the first of the tuple when teachers have theirs too), else
    graph_fingerprints of x["audio"] times x["masks"]."""
    if isinstance(x, (tuple, list)):
        return x[0]
    if not isinstance(x, dict):
        return x
    fingerprints = graph_features.graph_fingerprints(x["audio"], settings)
    if "masks" in x:
        fingerprints *= tf.reshape(x["masks"], [-1, settings.fingerprint_size])
    return fingerprints


def teacher_fingerprints(x: Union[tuple, dict], teachers: Sequence[ModelSettings]) -> List[tf.Tensor]:
    """The fingerprints each teacher takes of the training batch x (no SpecAugment masks):
    the rest of the tuple when the pipeline computed them, else graph_fingerprints of x["audio"]."""
    if isinstance(x, dict):
        return [graph_features.graph_fingerprints(x["audio"], settings) for settings in teachers]
    return list(x[1:])


def model_inputs(dataset: tf.data.Dataset, settings: ModelSettings, on_device: bool,
                 teachers: Sequence[ModelSettings] = ()) -> tf.data.Dataset:
    """(x, labels) from (audio, [masks,] labels): x the fingerprints (with teachers, the tuple of
    the student's and each teacher's), or with on_device the audio dict that fingerprints_of and
    teacher_fingerprints turn into them inside the training step."""

    def split(*element):
        x = {"audio": element[0]}
        if len(element) == 3:
            x["masks"] = element[1]
        return x, element[-1]

    def on_host(x, labels):
        student = fingerprints_of(x, settings)
        if not teachers:
            return student, labels
        return (student, *teacher_fingerprints(x, teachers)), labels

    dataset = dataset.map(split)
    if not on_device:
        dataset = dataset.map(on_host, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
