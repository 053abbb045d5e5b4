"""Writes a data set as TFRecord shards once, for training that streams it from disk.

    python prepare_data.py --data_url '' --data_dir ../data/speech_commands --shards_dir /data/kws_shards
    python train.py --shards_dir /data/kws_shards ...

The data set is indexed and split exactly as train.py does it from --data_dir
(the same data, label and split flags, --seed included: the same partitions,
labels, silence and unknown samples), decoded a shard at a time and written
as <partition>-NNNNN-of-MMMMM.tfrecord files of --clips_per_shard int16 clips
with their labels, plus the background noise and manifest.json (kws/data/shards.py
describes the format). train.py --shards_dir then reads the clips from disk
(each worker its own shards) instead of holding them in memory; augmentation
and fingerprints are as from --data_dir. Every file is written under a
temporary name and renamed; the manifest, written last, marks a complete
folder, and a folder that has one is not overwritten.
"""
import argparse

from kws import cli, features, vocabulary
from kws.data import dataset
from kws.data import shards as records
from kws.data import speech_commands as input_data


def main(args: argparse.Namespace) -> None:
    settings = features.settings_from_flags(args)
    data = dataset.DataSettings.from_flags(args)
    manifest = records.write_shards(data, args.shards_dir, args.clips_per_shard, settings)
    partitions = manifest["partitions"]
    print(f"Wrote {args.shards_dir}: " + ", ".join(
        f"{name} {partitions[name]['count']} clips in {len(partitions[name]['shards'])} shards"
        for name in input_data.PARTITIONS))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    input_data.add_data_flags(parser, evaluation_folders=False, decode_cache=False)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    records.add_shard_flags(parser, writing=True)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
