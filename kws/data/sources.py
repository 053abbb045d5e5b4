"""What training reads of a data set, declared once, and the source that serves it.

Two sources provide it: AudioProcessor (kws/data/speech_commands.py: the clips in memory)
and ShardedData (kws/data/shards.py: TFRecord shards streamed from disk, --shards_dir),
which also gives each worker of a multi-worker strategy its own shards (ShardedSource).
tests/unit/data/test_sources.py checks that both keep to it.
"""
from typing import List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from kws.data import shards, speech_commands
from kws.data.dataset import DataSettings
from kws.features import ModelSettings


@runtime_checkable
class TrainingData(Protocol):
    """A data set as the trainer reads it."""

    words_list: List[str]  # the labels: _silence_, _unknown_, the wanted words
    model_settings: ModelSettings

    def set_size(self, partition: str) -> int:
        """How many samples a partition has (silence and unknown included)."""

    def fingerprints(self, partition: str) -> Tuple[np.ndarray, np.ndarray]:
        """Deterministic fingerprints [n, fingerprint_size] and labels [n] of a partition."""

    def training_dataset(self, batch_size: int, start_step: int = 0, on_device: bool = False,
                         teachers: Sequence[ModelSettings] = ()):
        """The tf.data batches of training from start_step on (each a function of seed and
        step): (model inputs, labels), with each teacher's inputs when there are teachers."""


@runtime_checkable
class ShardedSource(TrainingData, Protocol):
    """A data set whose workers each read their own part (tf.distribute's InputContext)."""

    def worker_dataset(self, context, batch_size: int, start_step: int, on_device: bool,
                       teachers: Sequence[ModelSettings] = ()):
        """One worker's training batches: its shards, its share of the global batch."""


def training_data(data: DataSettings, settings: ModelSettings, shards_dir: Optional[str] = None
                  ) -> TrainingData:
    """The training data: ShardedData of shards_dir (--shards_dir) when given, else the
    AudioProcessor of data."""
    if shards_dir:
        return shards.ShardedData(shards_dir, data, settings)
    return speech_commands.AudioProcessor(data, settings)
