"""Speech Commands data: download, index, split and load; fingerprints per partition.

A data set is one or more folders of <word>/<clip> (--data_dir A,B), split
into training, validation and testing by the hash of each speaker's name (the
data set's standard rule), with silence and unknown-word samples added at
--silence_percentage and --unknown_percentage. AudioProcessor holds the clips
in memory (int16) and serves deterministic fingerprints of the validation and
testing partitions, and augmented training batches through tf.data. The
audio files are read by kws/data/audio_io.py, the fingerprint is kws/features.py's and the
augmentations are kws/data/augmentation.py's. TensorFlow is imported only to build the
training pipeline.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from kws import cli, features, tf_env
from kws.cli import UsageError
from kws.data import audio_io
from kws.data import augmentation as aug
from kws.data import data_split, pipeline, spectral_mix
from kws.data.audio_io import AUDIO_EXTENSIONS
from kws.data.data_split import BACKGROUND_NOISE_DIR_NAME, PARTITIONS, RANDOM_SEED
from kws.data.dataset import DataIndex, DataSettings, data_dirs_from_flag
from kws.features import ModelSettings
from kws.vocabulary import SILENCE_INDEX, UNKNOWN_WORD_INDEX

tf = tf_env.lazy_tensorflow()

DEFAULT_DATA_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
VALIDATION_UNKNOWN_RATIO = 0.5  # --validation_dir: unknown clips at most this share of keyword clips


def add_split_flags(group: argparse._ArgumentGroup) -> None:
    """--validation_percentage and --testing_percentage: the split of --data_dir by speaker."""
    group.add_argument("--validation_percentage", type=cli.non_negative_float, default=10,
                       help="What percentage of wavs to use as a validation set.")
    group.add_argument("--testing_percentage", type=cli.non_negative_float, default=10,
                       help="What percentage of wavs to use as a test set.")


def add_data_flags(parser: argparse.ArgumentParser, evaluation_folders: bool = True,
                   decode_cache: bool = True) -> None:
    """Flags of the data set and its split (with add_label_flags, features.add_feature_flags);
    without evaluation_folders no --test_dir and --validation_dir, without decode_cache no
    --audio_cache_dir (prepare_data.py reads neither)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data_url", default=DEFAULT_DATA_URL,
                       help="Location of the speech training data archive; '' uses --data_dir as it is.")
    group.add_argument("--data_dir", default="/tmp/speech_dataset/",
                       help="Where the speech training data is (or is downloaded to): folders of "
                            "<word>/<clip> in any of " + " ".join(AUDIO_EXTENSIONS) + ". Several "
                            "sources as a comma list (e.g. real recordings,synthesized keywords): "
                            "their word folders are merged, each clip split by the same hash rule; "
                            "--data_url downloads into the first.")
    group.add_argument("--background_noise_dir", default=None,
                       help="A folder of long noise recordings to mix into training clips and "
                            "silence, in addition to each --data_dir's _background_noise_/.")
    if decode_cache:
        group.add_argument("--audio_cache_dir", default=audio_io.DEFAULT_AUDIO_CACHE_DIR,
                           help="Where clips decoded from compressed formats (.flac .ogg .opus "
                                ".mp3) are kept, keyed by the file list, rate and length: the next "
                                "run loads them in seconds ('' for no cache).")
    if evaluation_folders:
        group.add_argument("--test_dir", default=None,
                           help="An evaluation folder in the layout of speech_commands_test_set_v0.02: "
                                "one folder per label, _silence_ and _unknown_ included, every clip "
                                "labelled by its folder.")
    add_split_flags(group)
    group.add_argument("--silence_percentage", type=cli.non_negative_float, default=10.0,
                       help="How much of the training data should be silence.")
    group.add_argument("--unknown_percentage", type=cli.non_negative_float, default=10.0,
                       help="How much of the training data should be unknown words.")
    data_split.add_mixing_flags(group)
    group.add_argument("--extra_unknown_dirs", type=cli.comma_list(str), default=[],
                       help="Comma-separated folders of <word>/<clip> whose words (other than the "
                            "wanted ones) are added to _unknown_, split by the same hash rule.")
    group.add_argument("--exclude_words", type=cli.comma_list(str), default=[],
                       help="Comma-separated words left out of every partition, neither keywords "
                            "nor unknown (e.g. bed,cat,happy: words a model must never hear, to "
                            "measure wake-word detectors on them).")
    group.add_argument("--held_out_speaker_percentage", type=cli.non_negative_float, default=0.0,
                       help="Leave this percentage of the training partition's speakers out of "
                            "training (a second hash of the speaker: data_split.held_out_rank). "
                            "train_wake_word.py chooses its threshold on the first 10 percent: a "
                            "backbone trained with 10 has never heard those voices.")
    if evaluation_folders:
        group.add_argument("--validation_dir", default=None,
                           help="Select the best model on this folder instead of the validation "
                                "partition: evaluation-folder layout, the wanted words by name, "
                                "other word folders as _unknown_ (at most half as many clips as the "
                                "keywords), plus noise silence at --silence_percentage. Never the "
                                "test folder.")
    group.add_argument("--seed", type=int, default=RANDOM_SEED,
                       help="Fixes the choice of silence/unknown samples, the augmentation and the "
                            "initialization.")


def partition_silence(labels: np.ndarray, partition: str, seed: int,
                      background: aug.BackgroundNoise, samples: int
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """The rows of a partition's silence samples and their noise clips, from the seeded rng
    [seed, partition] (none without noise recordings: those samples stay digital silence)."""
    silence = np.flatnonzero(labels == SILENCE_INDEX)
    if not len(silence) or not background.noises:
        return silence[:0], np.zeros((0, samples), np.int16)
    rng = np.random.default_rng([seed, PARTITIONS.index(partition)])
    return silence, background.silence(len(silence), samples, rng)


class AudioProcessor:
    """Indexes a Speech Commands folder, splits it, and serves fingerprints.

    Validation and test fingerprints are deterministic: they are computed once
    and kept (with validation_dir, "validation" is that real folder's). Training
    batches are augmented (time shift, background noise, and what augmentation
    turns on) and fingerprinted on the fly by a tf.data pipeline, SpecAugment
    masks last; every batch is a pure function of (seed, step).
    """

    def __init__(self, settings: DataSettings, model_settings: ModelSettings):
        index = DataIndex.build(settings, model_settings.sample_rate)
        self.settings = settings
        self.data_dir = settings.data_dir
        self.audio_cache_dir = settings.audio_cache_dir
        self.model_settings = model_settings
        self.words_list = index.words_list
        self.seed = settings.seed
        self.augmentation = settings.augmentation
        self.silence_percentage = settings.silence_percentage
        self.fingerprinter = features.Fingerprinter(model_settings)
        self.mixes = index.mixes
        self.data_index = index.data_index
        self.unknown_pool = index.unknown_pool
        self.background_data = index.background_data
        self._load_audio()
        self.background, self.transforms, self.spec_augment = aug.training_augmenters(
            settings.augmentation, self.background_data, settings.background_frequency,
            settings.background_volume, settings.time_shift_ms, model_settings, settings.seed)
        self.time_shift_samples = int(settings.time_shift_ms * model_settings.sample_rate / 1000)
        self._mixers: Dict[tuple, Optional[spectral_mix.SpectralMixer]] = {}
        self._fingerprint_cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.validation_dir = settings.validation_dir
        if settings.validation_dir:
            self._validation_clips = self._load_validation_folder(settings.validation_dir)

    @classmethod
    def from_flags(cls, args: argparse.Namespace, model_settings: ModelSettings) -> "AudioProcessor":
        """Builds the processor from the data flags, downloading the data set if needed."""
        return cls(DataSettings.from_flags(args), model_settings)

    def _load_audio(self) -> None:
        """Reads every clip into memory (int16), dropping unreadable files from the index.

        Per partition, `audio` holds each distinct clip once plus one all-zero
        clip for silence, and `rows` maps every sample to its clip; `unknown_rows`
        are the training clips that --unknown_draw per_batch draws unknown samples from.
        """
        settings = self.model_settings
        self.audio: Dict[str, np.ndarray] = {}
        self.rows: Dict[str, np.ndarray] = {}
        self.labels: Dict[str, np.ndarray] = {}
        all_errors: List[str] = []
        for partition in PARTITIONS:
            pool = self.unknown_pool if partition == "training" else []
            paths = sorted({path for path, _ in self.data_index[partition] if path} | set(pool))
            clips, kept, errors = audio_io.load_clips(paths, settings.sample_rate,
                                                   settings.desired_samples, self.audio_cache_dir)
            all_errors.extend(errors)
            row_of = {paths[i]: row for row, i in enumerate(kept)}
            row_of[""] = len(kept)
            entries = [entry for entry in self.data_index[partition] if entry[0] in row_of]
            self.data_index[partition] = entries
            self.audio[partition] = np.concatenate(
                [clips, np.zeros((1, settings.desired_samples), dtype=np.int16)])
            self.rows[partition] = np.array([row_of[path] for path, _ in entries], dtype=np.int64)
            self.labels[partition] = np.array([label for _, label in entries], dtype=np.int32)
            if partition == "training":
                self.unknown_rows = np.array(sorted(row_of[path] for path in pool if path in row_of),
                                             dtype=np.int64)
        audio_io.report_unreadable(all_errors)

    def set_size(self, partition: str) -> int:
        """How many samples (silence and unknown included) a partition has."""
        return len(self.data_index[partition])

    def fingerprints(self, partition: str) -> Tuple[np.ndarray, np.ndarray]:
        """Deterministic fingerprints and labels of a partition (no augmentation), computed once:
        those of clips(partition)."""
        if partition == "validation" and self.validation_dir:
            if "validation_dir" not in self._fingerprint_cache:
                clips, labels = self._validation_clips
                self._fingerprint_cache["validation_dir"] = (self.fingerprinter(clips), labels)
            return self._fingerprint_cache["validation_dir"]
        if partition not in self._fingerprint_cache:
            fingerprints = self.fingerprinter(self.audio[partition])[self.rows[partition]]
            silence, noise = partition_silence(self.labels[partition], partition,
                                               self.mixes[partition].seed, self.background,
                                               self.model_settings.desired_samples)
            if len(silence):
                fingerprints[silence] = self.fingerprinter(noise)
            self._fingerprint_cache[partition] = (fingerprints, self.labels[partition])
        return self._fingerprint_cache[partition]

    def clips(self, partition: str) -> Tuple[np.ndarray, np.ndarray]:
        """Deterministic int16 clips and labels of a partition (no augmentation).

        Silence samples are background noise at a seeded random volume, as in
        training and as the `_silence_` clips of the canonical test set are
        (zeros without noise recordings).
        """
        if partition == "validation" and self.validation_dir:
            return self._validation_clips
        clips = self.audio[partition][self.rows[partition]]
        silence, noise = partition_silence(self.labels[partition], partition,
                                           self.mixes[partition].seed, self.background,
                                           self.model_settings.desired_samples)
        clips[silence] = noise
        return clips, self.labels[partition]

    def _load_validation_folder(self, folder: str) -> Tuple[np.ndarray, np.ndarray]:
        """--validation_dir's clips and labels: keywords, unknown (capped), noise silence."""
        clips, labels, _ = load_evaluation_folder(folder, self.words_list, self.model_settings,
                                                  others_as_unknown=True, cache_dir=self.audio_cache_dir)
        rng = np.random.default_rng([self.mixes["validation"].seed, 3 << 20])
        keywords = np.flatnonzero(labels > UNKNOWN_WORD_INDEX)
        unknown = np.flatnonzero(labels == UNKNOWN_WORD_INDEX)
        silence = np.flatnonzero(labels == SILENCE_INDEX)
        cap = int(math.ceil(len(keywords) * VALIDATION_UNKNOWN_RATIO)) if len(keywords) else len(unknown)
        unknown = np.sort(rng.permutation(unknown)[:cap])
        keep = np.concatenate([keywords, unknown, silence])
        clips, labels = clips[keep], labels[keep]
        if not len(silence) and self.background_data:
            count = int(math.ceil(len(keywords) * self.silence_percentage / 100))
            clips = np.concatenate([clips, self.silence_clips(count, rng)])
            labels = np.concatenate([labels, np.full(count, SILENCE_INDEX, dtype=np.int32)])
        print(f"Model selection on --validation_dir {folder}: "
              + ", ".join(f"{word} {int(np.sum(labels == i))}" for i, word in enumerate(self.words_list)))
        return clips, labels


    def silence_clips(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """count int16 clips of background noise, each at a random volume in [0, 1)."""
        return self.background.silence(count, self.model_settings.desired_samples, rng)

    def augment(self, clips: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int16 clips through the training transforms (augmentation.transforms): float32 in [-1, 1]."""
        return aug.apply(self.transforms, clips, labels == SILENCE_INDEX, rng)

    def training_batches(self, batch_size: int, start_step: int = 0
                         ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Augmented training audio, one batch per step, from start_step on.

        Step s's batch depends only on (seed, s): a resumed run sees exactly the
        batches an uninterrupted one would have.
        """
        if len(self.rows["training"]) == 0:  # checked here, not at the first next()
            raise UsageError(f"no training samples in --data_dir {self.data_dir} (every clip fell "
                             f"in the validation or testing partition, or was unreadable)")
        return self._training_batches(batch_size, start_step)

    def _training_batches(self, batch_size: int, start_step: int
                          ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for step, clip_rows, batch_labels in self.training_rows(batch_size, start_step):
            rng = np.random.default_rng([self.seed, 1 << 20, step])
            yield self.augment(self.audio["training"][clip_rows], batch_labels, rng), batch_labels

    def training_rows(self, batch_size: int, start_step: int = 0
                      ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """(step, rows of audio["training"], labels) of each training batch from start_step on:
        the samples in a seeded order per epoch, and with --unknown_draw per_batch each unknown
        sample's clip drawn afresh from unknown_rows by (seed, step)."""
        rows = self.rows["training"]
        labels = self.labels["training"]
        count = len(rows)
        step = start_step
        epoch, order = -1, None
        while True:
            positions = np.arange(step * batch_size, (step + 1) * batch_size)
            batch_rows = np.empty(batch_size, dtype=np.int64)
            for epoch_of_batch in np.unique(positions // count):
                if epoch_of_batch != epoch:
                    epoch = int(epoch_of_batch)
                    order = np.random.default_rng([self.seed, epoch]).permutation(count)
                mask = positions // count == epoch_of_batch
                batch_rows[mask] = order[positions[mask] % count]
            clip_rows = rows[batch_rows]
            unknown = np.flatnonzero(labels[batch_rows] == UNKNOWN_WORD_INDEX)
            if len(unknown) and len(self.unknown_rows):
                draw = np.random.default_rng([self.seed, 5 << 20, step])
                clip_rows[unknown] = self.unknown_rows[draw.integers(0, len(self.unknown_rows),
                                                                     len(unknown))]
            yield step, clip_rows, labels[batch_rows]
            step += 1

    def training_dataset(self, batch_size: int, start_step: int = 0, on_device: bool = False,
                         teachers: Sequence[ModelSettings] = ()) -> tf.data.Dataset:
        """tf.data pipeline of (fingerprints [batch, fingerprint_size], labels [batch]); with
        on_device, of (audio dict, labels) for the step to fingerprint (pipeline.model_inputs);
        with teachers (their settings), x also carries their fingerprints of the same audio.
        The batches are mixed in the spectrum where --augmentation_domain allows (kws/data/spectral_mix.py)."""
        self.training_batches(batch_size, start_step)  # raises UsageError now if there is no data
        mixer = None if on_device else self.spectral_mixer(teachers)
        if mixer is not None:
            return pipeline.from_fingerprint_generator(
                lambda: self._spectral_batches(mixer, batch_size, start_step, teachers), batch_size,
                [self.model_settings, *teachers])
        masks = self.spec_augment.masks if self.spec_augment.enabled else None
        dataset = pipeline.from_generator(lambda: self.training_batches(batch_size, start_step),
                                          batch_size, self.model_settings, masks, start_step)
        return pipeline.model_inputs(dataset, self.model_settings, on_device, teachers)

    def spectral_mixer(self, teachers: Sequence[ModelSettings] = ()
                       ) -> Optional[spectral_mix.SpectralMixer]:
        """The spectra of the training clips and noise for the student's and the teachers'
        features (spectral_mix.mixer_for, built once per set of teachers; one with more bins
        serves the student alone too), or None where batches are mixed as audio."""
        key = tuple(teachers)
        if key not in self._mixers:
            bins = spectral_mix.shared_bins([self.model_settings, *teachers])
            built = [mixer for mixer in self._mixers.values() if mixer is not None and mixer.bins >= bins]
            self._mixers[key] = built[0] if built and not teachers else spectral_mix.mixer_for(
                self.audio["training"], self.background.noises, self.model_settings, teachers,
                self.augmentation, self.time_shift_samples)
        return self._mixers[key]

    def _spectral_batches(self, mixer: spectral_mix.SpectralMixer, batch_size: int, start_step: int,
                          teachers: Sequence[ModelSettings] = ()) -> Iterator[tuple]:
        """(x, labels) of each training batch from start_step on, mixed in the spectrum with the
        draws of (seed, step): x the fingerprints, with teachers the tuple of every settings'
        (computed once per distinct settings: a teacher framed like the student without
        SpecAugment's masks shares its fingerprints)."""
        draws = spectral_mix.DrawSettings(mixer.shift_hops, self.augmentation.gain_db,
                                          len(self.background.noises), self.background.frequency,
                                          self.background.volume)
        for step, rows, labels in self.training_rows(batch_size, start_step):
            rng = np.random.default_rng([self.seed, 1 << 20, step])
            magnitude = mixer.magnitude(rows, spectral_mix.draw(draws, mixer, labels == SILENCE_INDEX, rng))
            masks = self.spec_augment.masks(batch_size, step) if self.spec_augment.enabled else None
            student = spectral_mix.fingerprints(magnitude, self.model_settings, masks)
            if not teachers:
                yield student, labels
                continue
            computed = {} if masks is not None else {self.model_settings: student}
            for one in teachers:
                if one not in computed:
                    computed[one] = spectral_mix.fingerprints(magnitude, one)
            yield (student, *(computed[one] for one in teachers)), labels


def evaluation_folder_files(test_dir: str, words_list: Sequence[str], others_as_unknown: bool = False
                            ) -> Tuple[List[str], List[int]]:
    """The audio files of an evaluation folder (one sub-folder per label), in sorted order, and
    the index into words_list of each one's folder; other folders are _unknown_ when
    others_as_unknown, else a UsageError."""
    if not os.path.isdir(test_dir):
        raise UsageError(f"--test_dir {test_dir} is not a folder")
    label_of = {word: i for i, word in enumerate(words_list)}
    folders = sorted(entry for entry in os.listdir(test_dir)
                     if os.path.isdir(os.path.join(test_dir, entry)) and entry != BACKGROUND_NOISE_DIR_NAME)
    unknown_folders = [folder for folder in folders if folder.lower() not in label_of]
    if others_as_unknown:
        for folder in unknown_folders:
            label_of[folder.lower()] = UNKNOWN_WORD_INDEX
        unknown_folders = []
    if unknown_folders:
        raise UsageError(f"--test_dir {test_dir} has folders that are not labels of the model "
                         f"({', '.join(unknown_folders)}); the labels are {', '.join(words_list)}")
    paths, labels = [], []
    for folder in folders:
        for path in audio_io.audio_files(os.path.join(test_dir, folder)):
            paths.append(path)
            labels.append(label_of[folder.lower()])
    if not paths:
        raise UsageError(f"--test_dir {test_dir} holds no audio files in label folders "
                         f"(expected <test_dir>/<label>/<clip> in {' '.join(AUDIO_EXTENSIONS)})")
    return paths, labels


def load_evaluation_folder(test_dir: str, words_list: Sequence[str], model_settings: ModelSettings,
                           others_as_unknown: bool = False, cache_dir: Optional[str] = None
                           ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Reads an evaluation folder: one sub-folder per label, every clip labelled by its folder.

    Returns int16 clips [n, desired_samples], label indices into words_list,
    and the paths, in sorted order. No split, no augmentation.
    """
    paths, labels = evaluation_folder_files(test_dir, words_list, others_as_unknown)
    clips, kept, errors = audio_io.load_clips(paths, model_settings.sample_rate,
                                           model_settings.desired_samples, cache_dir)
    audio_io.report_unreadable(errors)
    return clips, np.array([labels[i] for i in kept], dtype=np.int32), [paths[i] for i in kept]


def has_word_folders(data_dir: str) -> bool:
    """Whether a --data_dir (comma list) holds <word>/<clip> files other than noise."""
    return any(os.path.basename(os.path.dirname(path)) != BACKGROUND_NOISE_DIR_NAME
               for folder in data_dirs_from_flag(data_dir)
               for path in audio_io.word_folder_files(folder))


class DataSource:
    """The data set of the settings: an AudioProcessor, built at most once, when first needed."""

    def __init__(self, settings: DataSettings, model_settings: ModelSettings,
                 processor: Optional[AudioProcessor] = None):
        self.settings = settings
        self.model_settings = model_settings
        self._processor = processor

    @classmethod
    def from_flags(cls, args: argparse.Namespace, model_settings: ModelSettings) -> "DataSource":
        """The data set of the data flags."""
        return cls(DataSettings.from_flags(args), model_settings)

    def usable(self) -> bool:
        """--data_dir holds word folders, or will be downloaded (no --test_dir to go by)."""
        settings = self.settings
        return has_word_folders(settings.data_dir) or bool(settings.data_url and not settings.test_dir)

    @property
    def processor(self) -> AudioProcessor:
        if self._processor is None:
            self._processor = AudioProcessor(self.settings, self.model_settings)
        return self._processor
