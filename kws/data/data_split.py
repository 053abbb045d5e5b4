"""The split of a data set: which partition each clip goes to, and the silence and unknown
samples each partition gets.

Clips are split by the SHA-1 of their speaker's name (`which_set`, the data set's
standard rule). Each partition then gets silence samples and a random choice of
unknown-word clips, as percentages of its keyword count. Training takes them
from the flags (--silence_percentage, --unknown_percentage, --seed). Validation
and testing are evaluation sets: by default (`--evaluation_partitions fixed`)
they have one composition whatever the training flags and seed --
EVALUATION_SILENCE_PERCENTAGE and EVALUATION_UNKNOWN_PERCENTAGE drawn with
EVALUATION_SEED -- so that two recipes are scored on the same clips.
`--evaluation_partitions flags` gives them the training flags too, as Arm's and
TensorFlow's scripts do.

A second hash of the speaker (`held_out_rank`, 0 to 99) marks speakers of the
training partition that a model may be kept from hearing: train_wake_word.py
chooses its threshold on a stream of the first STREAM_SPEAKER_PERCENT of them
(kws/wake_word/data.py), and `--held_out_speaker_percentage` leaves the first
that many percent out of a model's training (a backbone that never heard the
threshold's voices).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np

from kws.cli import UsageError
from kws.data import audio_io
from kws.vocabulary import SILENCE_INDEX, UNKNOWN_WORD_INDEX

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M
BACKGROUND_NOISE_DIR_NAME = "_background_noise_"
PARTITIONS = ("training", "validation", "testing")
RANDOM_SEED = 59185
EVALUATION_SILENCE_PERCENTAGE = 10.0  # the data set's defaults
EVALUATION_UNKNOWN_PERCENTAGE = 10.0
EVALUATION_SEED = RANDOM_SEED
EVALUATION_PARTITIONS = ("fixed", "flags")
HELD_OUT_SALT = "stream:"  # of held_out_rank's hash (the wake-word negative stream's, first)
UNKNOWN_DRAWS = ("per_batch", "once")

Index = Dict[str, List[Tuple[str, int]]]  # partition -> [(path, label index)]; silence: path ''


def add_mixing_flags(group: argparse._ArgumentGroup) -> None:
    """--evaluation_partitions and --unknown_draw."""
    group.add_argument("--evaluation_partitions", choices=EVALUATION_PARTITIONS, default="fixed",
                       help="fixed: the validation and testing partitions get "
                            f"{EVALUATION_SILENCE_PERCENTAGE:g}%% silence and "
                            f"{EVALUATION_UNKNOWN_PERCENTAGE:g}%% unknown words drawn with one fixed "
                            "seed, whatever the training flags and --seed, so that recipes are "
                            "compared on the same clips; flags: they follow --silence_percentage, "
                            "--unknown_percentage and --seed (Arm's and TensorFlow's scripts).")
    group.add_argument("--unknown_draw", choices=UNKNOWN_DRAWS, default="per_batch",
                       help="per_batch: the unknown-word samples of each training batch are drawn "
                            "afresh from every unknown clip of the training partition; once: one "
                            "subset is drawn at start-up and reused (Arm's and TensorFlow's scripts; "
                            "also what --shards_dir streams: the samples prepare_data.py wrote).")


@dataclasses.dataclass(frozen=True)
class Mix:
    """The silence and unknown samples of one partition and the seed that draws them."""
    silence_percentage: float
    unknown_percentage: float
    seed: int


def partition_mixes(silence_percentage: float, unknown_percentage: float, seed: int,
                    evaluation_partitions: str = "fixed") -> Dict[str, Mix]:
    """The Mix of each partition: the flags' for training, and for validation and testing the
    fixed evaluation mix (or, with evaluation_partitions 'flags', the flags' too)."""
    if evaluation_partitions not in EVALUATION_PARTITIONS:
        raise UsageError(f"--evaluation_partitions must be one of {', '.join(EVALUATION_PARTITIONS)}, "
                         f"got {evaluation_partitions!r}")
    training = Mix(silence_percentage, unknown_percentage, seed)
    evaluation = training if evaluation_partitions == "flags" else Mix(
        EVALUATION_SILENCE_PERCENTAGE, EVALUATION_UNKNOWN_PERCENTAGE, EVALUATION_SEED)
    return {"training": training, "validation": evaluation, "testing": evaluation}


def which_set(filename: str, validation_percentage: float, testing_percentage: float) -> str:
    """Determines which partition a file belongs to, by the data set's standard rule.

    The name up to `_nohash_` identifies the speaker; its SHA-1 picks the
    partition, so a speaker's clips stay together and the split is stable as
    files are added.
    """
    hash_name_hashed = hashlib.sha1(speaker_of(filename).encode("utf-8")).hexdigest()
    percentage_hash = ((int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) *
                       (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def speaker_of(filename: str) -> str:
    """The speaker of a clip: its file name up to `_nohash_`."""
    return re.sub(r"_nohash_.*$", "", os.path.basename(filename))


def held_out_rank(filename: str) -> int:
    """0 to 99, by a SHA-1 of the clip's speaker other than which_set's: the speakers of rank
    below p are p percent of them, the same whatever the folder holds."""
    digest = hashlib.sha1(f"{HELD_OUT_SALT}{speaker_of(filename)}".encode()).hexdigest()
    return int(digest, 16) % 100


def scan(data_dirs: Sequence[str], extra_unknown_dirs: Sequence[str], wanted_words: Sequence[str],
         validation_percentage: float, testing_percentage: float,
         exclude_words: Sequence[str] = (), held_out_speaker_percentage: float = 0
         ) -> Tuple[Index, Index]:
    """(keyword clips, unknown-word clips) of each partition, from the word folders of the
    data folders (every word not wanted is unknown) and of the extra unknown folders; the
    clips of exclude_words are in none of them (--exclude_words: words a model never hears),
    and the training partition leaves out speakers of held_out_rank below
    held_out_speaker_percentage."""
    if validation_percentage + testing_percentage >= 100:
        raise UsageError("--validation_percentage plus --testing_percentage must be below 100")
    if not 0 <= held_out_speaker_percentage < 100:
        raise UsageError(f"--held_out_speaker_percentage must be at least 0 and below 100, got "
                         f"{held_out_speaker_percentage:g}")
    excluded = {word.lower() for word in exclude_words}
    both = sorted(excluded & set(wanted_words))
    if both:
        raise UsageError(f"--exclude_words {', '.join(both)} is also in --wanted_words")
    for folder in data_dirs:
        if not os.path.isdir(folder):
            raise UsageError(f"--data_dir {folder} is not a folder")
    wanted_index = {word: i + 2 for i, word in enumerate(wanted_words)}
    keywords: Index = {name: [] for name in PARTITIONS}
    unknowns: Index = {name: [] for name in PARTITIONS}
    all_words = set()
    for path in [path for folder in data_dirs for path in audio_io.word_folder_files(folder)]:
        word = os.path.basename(os.path.dirname(path)).lower()
        if word == BACKGROUND_NOISE_DIR_NAME:
            continue
        all_words.add(word)
        if word in excluded:
            continue
        partition = which_set(path, validation_percentage, testing_percentage)
        if partition == "training" and held_out_rank(path) < held_out_speaker_percentage:
            continue
        if word in wanted_index:
            keywords[partition].append((path, wanted_index[word]))
        else:
            unknowns[partition].append((path, UNKNOWN_WORD_INDEX))
    shown = ",".join(data_dirs)
    if not all_words:
        found = sorted(entry for folder in data_dirs for entry in os.listdir(folder))[:10]
        raise UsageError(f"no audio files in word folders of --data_dir {shown} "
                         f"(expected <data_dir>/<word>/<clip> in {' '.join(audio_io.AUDIO_EXTENSIONS)}; "
                         f"found: {', '.join(found) or 'nothing'})")
    for folder in extra_unknown_dirs:
        for path in audio_io.word_folder_files(folder):
            word = os.path.basename(os.path.dirname(path)).lower()
            if word in wanted_index or word in excluded or word.startswith("_"):
                continue  # keywords, excluded words, _silence_, _unknown_, noise: not unknowns
            partition = which_set(path, validation_percentage, testing_percentage)
            if partition == "training" and held_out_rank(path) < held_out_speaker_percentage:
                continue
            unknowns[partition].append((path, UNKNOWN_WORD_INDEX))
    for flag, words in (("--wanted_words", wanted_words), ("--exclude_words", sorted(excluded))):
        missing = [word for word in words if word not in all_words]
        if missing:
            raise UsageError(f"{flag} {', '.join(missing)} not found in --data_dir "
                             f"{shown}; it has: {', '.join(sorted(all_words))}")
    return keywords, unknowns


def compose(keywords: Index, unknowns: Index, mixes: Dict[str, Mix],
            evaluation_partitions: str = "fixed") -> Index:
    """Each partition's keywords plus its silence samples and a seeded choice of its unknown
    clips, shuffled. With evaluation_partitions 'flags', one random stream draws every
    partition in PARTITIONS order (the draws of Arm's and TensorFlow's scripts); with 'fixed',
    training draws from its seed's stream and the evaluation partitions from their own, so
    that nothing of training changes them."""
    training = np.random.default_rng(mixes["training"].seed)
    evaluation = training if evaluation_partitions == "flags" else np.random.default_rng(
        [mixes["validation"].seed, 1])
    index: Index = {}
    for partition in PARTITIONS:
        mix = mixes[partition]
        rng = training if partition == "training" else evaluation
        entries = list(keywords[partition])
        set_size = len(entries)
        entries.extend([("", SILENCE_INDEX)] * int(math.ceil(set_size * mix.silence_percentage / 100)))
        order = rng.permutation(len(unknowns[partition]))
        unknown_size = int(math.ceil(set_size * mix.unknown_percentage / 100))
        entries.extend(unknowns[partition][i] for i in order[:unknown_size])
        index[partition] = [entries[i] for i in rng.permutation(len(entries))]
    return index


def check_unknown_draw(unknown_draw: str) -> str:
    """--unknown_draw, checked."""
    if unknown_draw not in UNKNOWN_DRAWS:
        raise UsageError(f"--unknown_draw must be one of {', '.join(UNKNOWN_DRAWS)}, got {unknown_draw!r}")
    return unknown_draw
