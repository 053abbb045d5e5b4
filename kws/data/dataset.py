"""A data set before any clip is read: its settings (the data flags as one value) and its index.

DataSettings is what AudioProcessor (kws/data/speech_commands.py) is built from; DataIndex
is the split of its folders (kws/data/data_split.py) with the noise recordings, which the
processor then reads into memory and the shards writer (kws/data/shards.py) writes to disk.
"""
import argparse
import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kws.cli import UsageError
from kws.data import audio_io
from kws.data import augmentation as aug
from kws.data import data_split, download
from kws.data.audio_io import AUDIO_EXTENSIONS
from kws.data.augmentation import Augmentation
from kws.data.data_split import BACKGROUND_NOISE_DIR_NAME, RANDOM_SEED
from kws.vocabulary import prepare_words_list, wanted_words_from_flags


def data_dirs_from_flag(data_dir: str) -> List[str]:
    """The folders of a --data_dir comma list, in order, each once."""
    folders = list(dict.fromkeys(part.strip() for part in data_dir.split(",") if part.strip()))
    if not folders:
        raise UsageError("--data_dir is empty; expected a folder or a comma list of folders")
    return folders



@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The data flags as one value: the folders (and the archive they are downloaded from),
    their split, the silence and unknown samples, the augmentation of training batches
    (AudioProcessor's settings) and the evaluation folder."""

    data_dir: str  # a folder, or a comma list of folders
    wanted_words: Tuple[str, ...]
    validation_percentage: float = 10
    testing_percentage: float = 10
    silence_percentage: float = 10
    unknown_percentage: float = 10
    time_shift_ms: float = aug.DEFAULT_TIME_SHIFT_MS
    background_frequency: float = aug.DEFAULT_BACKGROUND_FREQUENCY
    background_volume: float = aug.DEFAULT_BACKGROUND_VOLUME
    seed: int = RANDOM_SEED
    augmentation: Augmentation = dataclasses.field(default_factory=Augmentation)
    extra_unknown_dirs: Tuple[str, ...] = ()
    validation_dir: Optional[str] = None
    background_noise_dir: Optional[str] = None
    audio_cache_dir: Optional[str] = None
    evaluation_partitions: str = "fixed"
    unknown_draw: str = "per_batch"
    exclude_words: Tuple[str, ...] = ()
    held_out_speaker_percentage: float = 0
    data_url: str = ""  # downloaded into the first folder of data_dir when it is not there
    test_dir: Optional[str] = None  # the evaluation folder (one folder per label)

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "DataSettings":
        """The data flags. Scripts that only evaluate have no augmentation flags: they get the
        defaults, which only training batches use; prepare_data.py has no evaluation folders
        and no decode cache."""
        return cls(
            args.data_dir, tuple(wanted_words_from_flags(args)), args.validation_percentage,
            args.testing_percentage, args.silence_percentage, args.unknown_percentage,
            getattr(args, "time_shift_ms", aug.DEFAULT_TIME_SHIFT_MS),
            getattr(args, "background_frequency", aug.DEFAULT_BACKGROUND_FREQUENCY),
            getattr(args, "background_volume", aug.DEFAULT_BACKGROUND_VOLUME),
            args.seed, Augmentation.from_flags(args), tuple(args.extra_unknown_dirs or ()),
            getattr(args, "validation_dir", None), args.background_noise_dir,
            getattr(args, "audio_cache_dir", None), args.evaluation_partitions, args.unknown_draw,
            tuple(args.exclude_words or ()), args.held_out_speaker_percentage, args.data_url,
            getattr(args, "test_dir", None))


@dataclasses.dataclass
class DataIndex:
    """A data set before any clip is read: its labels, each partition's samples (path, label;
    path "" for silence), the training clips unknown samples are drawn from per batch, the
    partitions' mixes and the noise recordings. AudioProcessor reads its clips; the shards
    writer (shards.write_shards) writes them."""

    words_list: List[str]
    data_index: Dict[str, List[Tuple[str, int]]]
    unknown_pool: List[str]
    mixes: Dict[str, data_split.Mix]
    background_data: List[np.ndarray]

    @classmethod
    def build(cls, settings: DataSettings, sample_rate: int) -> "DataIndex":
        """Indexes and splits the folders of settings (downloading data_url first if needed);
        reads the noise recordings."""
        download.maybe_download_and_extract_dataset(settings.data_url,
                                                    data_dirs_from_flag(settings.data_dir)[0])
        if settings.seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {settings.seed}")
        data_dirs = data_dirs_from_flag(settings.data_dir)
        extra = [folder for folder in settings.extra_unknown_dirs if folder]
        for folder in extra:
            if not os.path.isdir(folder):
                raise UsageError(f"--extra_unknown_dirs {folder} is not a folder")
        mixes = data_split.partition_mixes(settings.silence_percentage,
                                           settings.unknown_percentage, settings.seed,
                                           settings.evaluation_partitions)
        keywords, unknowns = data_split.scan(data_dirs, extra, settings.wanted_words,
                                             settings.validation_percentage,
                                             settings.testing_percentage, settings.exclude_words,
                                             settings.held_out_speaker_percentage)
        data_index = data_split.compose(keywords, unknowns, mixes, settings.evaluation_partitions)
        per_batch = data_split.check_unknown_draw(settings.unknown_draw) == "per_batch"
        pool = [path for path, _ in unknowns["training"]] if per_batch else []
        return cls(prepare_words_list(settings.wanted_words), data_index, pool, mixes,
                   _noise(settings, data_dirs, sample_rate))


def _noise(settings: DataSettings, data_dirs: Sequence[str], sample_rate: int) -> List[np.ndarray]:
    """The noise recordings: each folder's _background_noise_ and --background_noise_dir."""
    folders = [os.path.join(folder, BACKGROUND_NOISE_DIR_NAME) for folder in data_dirs]
    if settings.background_noise_dir:
        if not audio_io.audio_files(settings.background_noise_dir):
            raise UsageError(f"--background_noise_dir {settings.background_noise_dir} holds no "
                             f"audio files (expected {' '.join(AUDIO_EXTENSIONS)})")
        folders.append(settings.background_noise_dir)
    noises = audio_io.load_background_noise(folders, sample_rate)
    if not noises:
        print(f"No {BACKGROUND_NOISE_DIR_NAME} folder with audio in {settings.data_dir} and no "
              f"--background_noise_dir: training without background noise")
    return noises
