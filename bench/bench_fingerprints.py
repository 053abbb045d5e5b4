"""Fingerprint throughput on real clips: evaluation, augmented training, and the per-clip TF ops.

    python bench/bench_fingerprints.py [--test_dir DIR] [--data_dir DIR] [--batches N]

(a) evaluation: Fingerprinter (numpy) over every clip of --test_dir (file reading timed apart);
(b) training: AudioProcessor.training_dataset (time shift + background noise + MFCC) over
    --data_dir (default: the dev folder, all of it training; _silence_ and _unknown_ are
    then unknown words), batches of --batch_size;
(c) reference: reference_fingerprint (tf.raw_ops AudioSpectrogram + Mfcc), one clip at a time.
Features default to DS-CNN's: 40 ms window, 20 ms stride, 10 coefficients.
"""
import glob
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kws import cli  # noqa: E402
from kws.cli import UsageError  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
DEV = SHARED_DATA / "speech_commands_test_v0.02_dev"


def make_parser():
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--test_dir", default=str(DEV), help="Evaluation folder (one folder per label).")
    parser.add_argument("--data_dir", default=str(DEV),
                        help="Data folder (folder per word) for the training pipeline.")
    parser.add_argument("--background_dir", default=str(SHARED_DATA),
                        help="Folder holding _background_noise_/, used when --data_dir has none.")
    parser.add_argument("--wanted_words", default="yes,no,up,down,left,right,on,off,stop,go")
    parser.add_argument("--validation_percentage", type=cli.non_negative_float, default=0,
                        help="0 by default: the dev folder is a test set, its speakers all hash "
                             "to the testing partition at 10/10.")
    parser.add_argument("--testing_percentage", type=cli.non_negative_float, default=0)
    parser.add_argument("--window_size_ms", type=float, default=40.0)
    parser.add_argument("--window_stride_ms", type=float, default=20.0)
    parser.add_argument("--dct_coefficient_count", type=cli.positive_int, default=10)
    parser.add_argument("--batch_size", type=cli.positive_int, default=100)
    parser.add_argument("--batches", type=cli.positive_int, default=20,
                        help="Timed training batches (after one warm-up batch).")
    parser.add_argument("--reference_clips", type=cli.positive_int, default=300,
                        help="Clips for the per-clip TF ops path.")
    return parser


def rate(count, seconds):
    return f"{count / seconds:10.0f} /s  ({count} in {seconds:.2f} s)"


def main(args):
    import numpy as np
    import tensorflow as tf

    from kws import features, graph_features
    from kws.data import audio_io, dataset, speech_commands
    from kws.features import prepare_model_settings

    for flag, folder in (("--test_dir", args.test_dir), ("--data_dir", args.data_dir)):
        if not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder} is not a folder (the real clips live in ../shared/data)")
    wanted = [word for word in args.wanted_words.split(",") if word]
    settings = prepare_model_settings(16000, 1000, args.window_size_ms, args.window_stride_ms,
                                      args.dct_coefficient_count)
    print(f"features: {args.window_size_ms:g} ms window, {args.window_stride_ms:g} ms stride, "
          f"{args.dct_coefficient_count} coefficients -> {settings.fingerprint_size} floats; "
          f"TF {tf.__version__}, {os.cpu_count()} CPUs")

    # (a) evaluation
    paths = sorted(glob.glob(os.path.join(args.test_dir, "*", "*.wav")))
    if not paths:
        raise UsageError(f"--test_dir {args.test_dir} has no <label>/*.wav files")
    start = time.perf_counter()
    clips, kept, errors = audio_io.load_clips(paths, settings.sample_rate, settings.desired_samples)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    fingerprints = features.Fingerprinter(settings)(clips)
    eval_s = time.perf_counter() - start
    print(f"(a) reading {len(paths)} WAVs       {rate(len(paths), read_s)}")
    print(f"(a) Fingerprinter (numpy)       {rate(len(clips), eval_s)}")

    # (c) reference: the TF ops, one clip at a time
    count = min(args.reference_clips, len(clips))
    graph_features.reference_fingerprint(clips[0].astype(np.float32) / 32768.0, settings)  # warm up
    start = time.perf_counter()
    worst = 0.0
    for i in range(count):
        reference = graph_features.reference_fingerprint(clips[i].astype(np.float32) / 32768.0, settings)
        worst = max(worst, float(np.abs(reference - fingerprints[i]).max() / np.abs(reference).max()))
    ref_s = time.perf_counter() - start
    print(f"(c) reference_fingerprint loop  {rate(count, ref_s)}   "
          f"[max |diff| / max |ref| vs (a): {worst:.1e}]")

    # (b) training: augmented tf.data pipeline
    start = time.perf_counter()
    noise_dir = None
    if not os.path.isdir(os.path.join(args.data_dir, speech_commands.BACKGROUND_NOISE_DIR_NAME)):
        noise_dir = os.path.join(args.background_dir, speech_commands.BACKGROUND_NOISE_DIR_NAME)
    processor = speech_commands.AudioProcessor(dataset.DataSettings(
        args.data_dir, tuple(wanted), args.validation_percentage, args.testing_percentage,
        background_noise_dir=noise_dir), settings)
    print(f"    background noise: {len(processor.background_data)} recordings")
    build_s = time.perf_counter() - start
    print(f"(b) AudioProcessor built in {build_s:.2f} s: "
          + ", ".join(f"{p} {processor.set_size(p)}" for p in speech_commands.PARTITIONS))
    batch, n = args.batch_size, args.batches

    batches = processor.training_batches(batch)
    next(batches)
    start = time.perf_counter()
    for _ in range(n):
        next(batches)
    aug_s = time.perf_counter() - start
    print(f"(b) augmentation only (numpy)   {rate(n * batch, aug_s)}")

    iterator = iter(processor.training_dataset(batch))
    next(iterator)  # warm up: tracing, prefetch start
    start = time.perf_counter()
    for _ in range(n):
        fingerprints, labels = next(iterator)
    train_s = time.perf_counter() - start
    assert fingerprints.shape == (batch, settings.fingerprint_size)
    print(f"(b) training_dataset            {rate(n * batch, train_s)}")
    return 0


if __name__ == "__main__":
    cli.run(main, make_parser())
