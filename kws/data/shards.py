"""The sharded form of a data set: decoded clips in TFRecord files, streamed during training.

prepare_data.py writes it once (write_shards): AudioProcessor's index and split (the
same partitions, labels, silence and unknown samples as the in-memory path), decoded
chunk by chunk, each partition as <partition>-NNNNN-of-MMMMM.tfrecord files of
--clips_per_shard records in the index's (seeded, shuffled) order. A record is a
tf.train.Example with "audio" (the int16 clip, little-endian bytes) and "label" (int64);
a silence sample is an all-zero clip. Beside them: background_noise.npz (the noise
recordings, float32) and manifest.json (labels, clip geometry, the shards and their
counts), written last, so that a folder with a manifest is complete. Each file is written
under a temporary name and renamed.

train.py --shards_dir reads it (ShardedData): each worker its own training shards (every
n-th), interleaved and read in parallel, shuffled in windows of SHUFFLE_WINDOW records with
a seeded order per epoch, then augmented per batch by kws/data/augmentation.py's transforms and
fingerprinted as the in-memory path does (kws/data/pipeline.py). The state of the stream is a
function of (seed, step): a resumed run skips to its step within the epoch and sees the
batches an uninterrupted run would have. Validation and testing fingerprints are computed
chunk by chunk. Memory stays bounded by the windows and buffers, not the data set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from kws import cli, features, tf_env, vocabulary
from kws.cli import UsageError
from kws.data import audio_io
from kws.data import augmentation as aug
from kws.data import data_split, dataset, pipeline, speech_commands
from kws.data.speech_commands import PARTITIONS, SILENCE_INDEX
from kws.features import ModelSettings

tf = tf_env.lazy_tensorflow()

MANIFEST = "manifest.json"
NOISE_FILE = "background_noise.npz"
FORMAT = "kws-tfrecord-shards-1"
SHUFFLE_WINDOW = 2048  # records shuffled together (64 MB of 1 s clips at 16 kHz)
INTERLEAVE = 8  # shards read at once
EVALUATION_CHUNK = 1000  # clips fingerprinted at once for validation and testing


def add_shard_flags(parser: argparse.ArgumentParser, writing: bool = False) -> None:
    """--shards_dir: train.py reads it; prepare_data.py (writing) writes it, in --clips_per_shard."""
    if writing:
        parser.add_argument("--shards_dir", required=True,
                            help="Folder to write the TFRecord shards and their manifest.json to.")
        parser.add_argument("--clips_per_shard", type=cli.positive_int, default=1000,
                            help="Records per shard file (1000 one-second clips: 32 MB).")
        return
    parser.add_argument("--shards_dir", default=None,
                        help="Train from the TFRecord shards prepare_data.py wrote there, streamed "
                             "from disk with bounded memory, instead of reading --data_dir into memory.")


def _example(clip: np.ndarray, label: int) -> bytes:
    audio = tf.train.Feature(bytes_list=tf.train.BytesList(value=[clip.astype("<i2").tobytes()]))
    label = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(
        feature={"audio": audio, "label": label})).SerializeToString()


def write_shard(path: str, clips: np.ndarray, labels: Sequence[int]) -> int:
    """Writes int16 clips [n, samples] and labels as one TFRecord file, atomically; returns n."""
    temporary = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with tf.io.TFRecordWriter(temporary) as writer:
        for clip, label in zip(clips, labels):
            writer.write(_example(clip, label))
    os.replace(temporary, path)
    return len(labels)


def shard_name(partition: str, index: int, count: int) -> str:
    return f"{partition}-{index:05d}-of-{count:05d}.tfrecord"


def write_manifest(folder: str, words: Sequence[str], settings: ModelSettings,
                   shards: Dict[str, List[dict]], noises: Sequence[np.ndarray], source: dict) -> str:
    """Writes the noise recordings, then manifest.json (last: it marks the folder complete)."""
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{NOISE_FILE}")
    with open(temporary, "wb") as handle:
        np.savez(handle, *[np.asarray(noise, np.float32) for noise in noises])
    os.replace(temporary, os.path.join(folder, NOISE_FILE))
    manifest = {"format": FORMAT, "words": list(words), "sample_rate": settings.sample_rate,
                "desired_samples": settings.desired_samples, "source": source,
                "partitions": {name: {"count": sum(shard["count"] for shard in shards.get(name, [])),
                                      "shards": shards.get(name, [])} for name in PARTITIONS}}
    path = os.path.join(folder, MANIFEST)
    cli.write_atomically(path, (json.dumps(manifest, indent=1) + "\n").encode())
    return path


def write_shards(data: dataset.DataSettings, folder: str, clips_per_shard: int,
                 settings: ModelSettings) -> dict:
    """Indexes and splits data's --data_dir as train.py does and writes it to --shards_dir
    folder (once), in shards of clips_per_shard: the clips decoded a shard at a time. Returns
    the manifest."""
    if os.path.exists(os.path.join(folder, MANIFEST)):
        raise UsageError(f"--shards_dir {folder} already holds shards ({MANIFEST}); remove it or "
                         f"choose another folder")
    # prepare_data.py has no --validation_dir (selection is on the shards' validation
    # partition) and decodes each clip once, without the decode cache.
    index = dataset.DataIndex.build(dataclasses.replace(data, validation_dir=None, audio_cache_dir=""),
                                    settings.sample_rate)
    os.makedirs(folder, exist_ok=True)
    shards: Dict[str, List[dict]] = {}
    errors: List[str] = []
    silence = np.zeros(settings.desired_samples, dtype=np.int16)
    for partition in PARTITIONS:
        entries = index.data_index[partition]
        count = math.ceil(len(entries) / clips_per_shard)
        shards[partition] = []
        for number in range(count):
            chunk = entries[number * clips_per_shard:(number + 1) * clips_per_shard]
            paths = sorted({path for path, _ in chunk if path})
            clips, kept, failed = audio_io.load_clips(paths, settings.sample_rate, settings.desired_samples)
            errors.extend(failed)
            row_of = {paths[i]: row for row, i in enumerate(kept)}
            chunk = [(path, label) for path, label in chunk if not path or path in row_of]
            name = shard_name(partition, number, count)
            written = write_shard(os.path.join(folder, name),
                                  [clips[row_of[path]] if path else silence for path, _ in chunk],
                                  [label for _, label in chunk])
            shards[partition].append({"file": name, "count": written})
            print(f"Wrote {name} ({written} clips)", flush=True)
    audio_io.report_unreadable(errors)
    source = {"data_dir": data.data_dir, "validation_percentage": data.validation_percentage,
              "testing_percentage": data.testing_percentage, "silence_percentage": data.silence_percentage,
              "unknown_percentage": data.unknown_percentage, "seed": data.seed,
              "evaluation_partitions": data.evaluation_partitions,
              "extra_unknown_dirs": list(data.extra_unknown_dirs),
              "exclude_words": list(data.exclude_words),
              "held_out_speaker_percentage": data.held_out_speaker_percentage}
    write_manifest(folder, index.words_list, settings, shards, index.background_data, source)
    with open(os.path.join(folder, MANIFEST)) as handle:
        return json.load(handle)


def read_manifest(folder: str) -> dict:
    """The manifest of a shard folder; UsageError when it is not one."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise UsageError(f"--shards_dir {folder} is not a folder of shards written by prepare_data.py "
                         f"(no readable {MANIFEST}: {error.__class__.__name__})")
    if manifest.get("format") != FORMAT:
        raise UsageError(f"--shards_dir {folder}: {MANIFEST} is not of the format {FORMAT}")
    missing = [shard["file"] for part in manifest["partitions"].values() for shard in part["shards"]
               if not os.path.exists(os.path.join(folder, shard["file"]))]
    if missing:
        raise UsageError(f"--shards_dir {folder} lacks {len(missing)} shard file(s), e.g. {missing[0]}")
    return manifest


def _parse(records: tf.Tensor, samples: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Serialized examples [n] -> (int16 clips [n, samples], int32 labels [n])."""
    parsed = tf.io.parse_example(records, {"audio": tf.io.FixedLenFeature([], tf.string),
                                           "label": tf.io.FixedLenFeature([], tf.int64)})
    clips = tf.reshape(tf.io.decode_raw(parsed["audio"], tf.int16), [-1, samples])
    return clips, tf.cast(parsed["label"], tf.int32)


class ShardedData:
    """A shard folder as train.py's data: the interface of AudioProcessor that training uses
    (words_list, model_settings, set_size, fingerprints, training_dataset) plus worker_dataset."""

    def __init__(self, folder: str, data: dataset.DataSettings, settings: ModelSettings):
        """The shards in folder, read with data's seed and augmentation; data's other fields
        must agree with them (--wanted_words, no --validation_dir)."""
        manifest = read_manifest(folder)
        self.folder = folder
        self.manifest = manifest
        self.words_list = vocabulary.prepare_words_list(data.wanted_words)
        if manifest["words"] != self.words_list:
            raise UsageError(f"--wanted_words {','.join(data.wanted_words)} differs from the labels "
                             f"of --shards_dir {folder}: {','.join(manifest['words'][2:])}")
        if (manifest["sample_rate"], manifest["desired_samples"]) != (settings.sample_rate,
                                                                      settings.desired_samples):
            raise UsageError(f"--sample_rate/--clip_duration_ms give {settings.desired_samples} samples "
                             f"at {settings.sample_rate} Hz; --shards_dir {folder} holds "
                             f"{manifest['desired_samples']} at {manifest['sample_rate']} Hz")
        if data.validation_dir:
            raise UsageError("--validation_dir is not read with --shards_dir (select on the shards' "
                             "validation partition, or train from --data_dir)")
        self.model_settings = settings
        self.seed = data.seed
        source = manifest["source"]
        self.mixes = data_split.partition_mixes(
            source.get("silence_percentage", 10.0), source.get("unknown_percentage", 10.0),
            data.seed, source.get("evaluation_partitions", "flags"))
        with np.load(os.path.join(folder, NOISE_FILE)) as noises:
            self.background_data = [noises[f"arr_{i}"] for i in range(len(noises.files))]
        self.background, self.transforms, self.spec_augment = aug.training_augmenters(
            data.augmentation, self.background_data, data.background_frequency,
            data.background_volume, data.time_shift_ms, settings, data.seed)
        self.fingerprinter = features.Fingerprinter(settings)
        self._fingerprint_cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        print(f"Data: the shards of {folder} (written from {manifest['source'].get('data_dir')})")

    def set_size(self, partition: str) -> int:
        return int(self.manifest["partitions"][partition]["count"])

    def shards(self, partition: str) -> Tuple[List[str], List[int]]:
        """The non-empty shard files of a partition and their record counts."""
        entries = [shard for shard in self.manifest["partitions"][partition]["shards"] if shard["count"]]
        return [os.path.join(self.folder, shard["file"]) for shard in entries], \
            [int(shard["count"]) for shard in entries]

    def clips(self, partition: str, chunk: int = EVALUATION_CHUNK) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """A partition's (int16 clips, labels) in their written order, chunk records at a time."""
        files, _ = self.shards(partition)
        if not files:
            return
        records = tf.data.TFRecordDataset(files).batch(chunk)
        for clips, labels in records.map(lambda r: _parse(r, self.model_settings.desired_samples)):
            yield clips.numpy(), labels.numpy()

    def fingerprints(self, partition: str) -> Tuple[np.ndarray, np.ndarray]:
        """As AudioProcessor.fingerprints: deterministic fingerprints and labels, silence samples
        as background noise at a seeded volume; computed a chunk at a time, then kept."""
        if partition not in self._fingerprint_cache:
            parts = [(self.fingerprinter(clips), labels) for clips, labels in self.clips(partition)]
            fingerprints = np.concatenate([p for p, _ in parts]) if parts else \
                np.zeros((0, self.model_settings.fingerprint_size), np.float32)
            labels = np.concatenate([l for _, l in parts]) if parts else np.zeros(0, np.int32)
            silence, noise = speech_commands.partition_silence(
                labels, partition, self.mixes[partition].seed, self.background,
                self.model_settings.desired_samples)
            if len(silence):
                fingerprints[silence] = self.fingerprinter(noise)
            self._fingerprint_cache[partition] = (fingerprints, labels.astype(np.int32))
        return self._fingerprint_cache[partition]

    def training_dataset(self, batch_size: int, start_step: int = 0, on_device: bool = False,
                         teachers: Sequence[ModelSettings] = ()) -> tf.data.Dataset:
        """(x, labels) batches from every training shard (one input pipeline), from start_step on."""
        return self.worker_dataset(None, batch_size, start_step, on_device, teachers)

    def worker_dataset(self, context: Optional[tf.distribute.InputContext], batch_size: int,
                       start_step: int, on_device: bool, teachers: Sequence[ModelSettings] = ()
                       ) -> tf.data.Dataset:
        """This input pipeline's batches of one replica's share of the global batch_size:
        its own shards (every n-th of n pipelines), in a stream that is a function of
        (seed, position), from the position of start_step on; each step takes one batch per
        replica of this worker."""
        pipelines, pipeline_id = (context.num_input_pipelines, context.input_pipeline_id) if context else (1, 0)
        per_replica = context.get_per_replica_batch_size(batch_size) if context else batch_size
        local_replicas = context.num_replicas_in_sync // pipelines if context else 1
        files, counts = self.shards("training")
        files, counts = files[pipeline_id::pipelines], counts[pipeline_id::pipelines]
        if not files:
            raise UsageError(f"--shards_dir {self.folder} has {len(self.shards('training')[0])} training "
                             f"shard(s), fewer than the {pipelines} workers (write smaller --clips_per_shard)")
        first = start_step * local_replicas  # this pipeline's first batch
        start_epoch, offset = divmod(first * per_replica, sum(counts))
        seed = self.seed
        key = tf.constant(seed, tf.int64)

        def epoch(number: tf.Tensor) -> tf.data.Dataset:
            order = tf.argsort(tf.random.stateless_uniform([len(files)], tf.stack([key, number])))
            records = tf.data.Dataset.from_tensor_slices(tf.gather(files, order)).interleave(
                tf.data.TFRecordDataset, cycle_length=min(INTERLEAVE, len(files)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            windows = records.batch(SHUFFLE_WINDOW).enumerate()
            return windows.map(lambda i, window: tf.gather(window, tf.argsort(tf.random.stateless_uniform(
                tf.shape(window)[:1], tf.stack([key + 1, number * 100_003 + i]))))).unbatch()

        records = tf.data.Dataset.range(start_epoch, 2 ** 62).flat_map(epoch).skip(offset)
        batches = records.batch(per_replica, drop_remainder=True).map(
            lambda r: _parse(r, self.model_settings.desired_samples), num_parallel_calls=tf.data.AUTOTUNE)
        masks = self.spec_augment.enabled

        def augment(element, clips, labels):
            key = [seed, 1 << 20, int(element)] + ([pipeline_id] if pipelines > 1 else [])
            audio = aug.apply(self.transforms, clips, labels == SILENCE_INDEX, np.random.default_rng(key))
            extra = [self.spec_augment.masks(len(labels), int(element))] if masks else []
            return (audio, *extra, labels)

        specs = pipeline.element_spec(per_replica, self.model_settings, masks)

        def augmented(element, batch):
            outputs = tf.numpy_function(augment, [element, *batch], [spec.dtype for spec in specs])
            return tuple(tf.ensure_shape(output, spec.shape) for output, spec in zip(outputs, specs))

        dataset = batches.enumerate(first).map(augmented, num_parallel_calls=tf.data.AUTOTUNE,
                                               deterministic=True)
        return pipeline.model_inputs(dataset, self.model_settings, on_device, teachers)
