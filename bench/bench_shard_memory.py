"""Peak resident memory of train.py as the data set grows: streamed from shards vs in memory.

    python bench/bench_shard_memory.py [--sizes 10000,50000,200000] [--memory_sizes 10000,50000]
                                       [--steps 300] [--work_dir /tmp/bench_shard_memory]

For each size N it synthesizes N one-second clips (a word-specific tone in noise, 12
labels, 80/10/10 per cent training/validation/testing) and writes them as shards with
records.write_shard (once; kept in --work_dir), then runs train.py on them in a child
process (DS-CNN-S, batch 100, --steps steps, one validation at the end, then the test)
and prints the child's peak resident set size (ru_maxrss from wait4). For the sizes in
--memory_sizes it also writes the same clips as WAV folders and runs train.py from
--data_dir, the in-memory path, for comparison.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kws import cli  # noqa: E402
from kws import vocabulary  # noqa: E402

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]
SAMPLES = 16000
DS_CNN_S = ["--model_architecture", "ds_cnn", "--model_size_info",
            *"5 64 10 4 2 2 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1".split(),
            "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]
CLIPS_PER_SHARD = 1000


def make_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=cli.comma_list(cli.positive_int), default="10000,50000,200000")
    parser.add_argument("--memory_sizes", type=cli.comma_list(cli.positive_int), default="10000,50000",
                        help="Sizes also trained in memory from WAV folders.")
    parser.add_argument("--steps", type=cli.positive_int, default=300)
    parser.add_argument("--work_dir", default="/tmp/bench_shard_memory")
    return parser


def clips(start: int, count: int) -> tuple:
    """Clips start..start+count: (int16 [count, SAMPLES], word indices)."""
    rng = np.random.default_rng(start)
    words = np.arange(start, start + count) % len(WORDS)
    t = np.arange(SAMPLES) / 16000
    envelope = np.exp(-((t - 0.5) / 0.15) ** 2)
    audio = 0.3 * envelope * np.sin(2 * np.pi * (300 + 150 * words[:, None]) * t)
    audio += rng.normal(0, 0.02, (count, SAMPLES))
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16), words


def write_shards(folder: Path, size: int) -> None:
    """size synthesized clips as shards (labels: silence, unknown for cat/dog, the ten words)."""
    from kws import features
    from kws.data import shards as records
    if (folder / records.MANIFEST).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    labels_of = {word: (i + 2 if i < 10 else vocabulary.UNKNOWN_WORD_INDEX) for i, word in enumerate(WORDS)}
    counts = {"training": size * 8 // 10, "validation": size // 10}
    counts["testing"] = size - counts["training"] - counts["validation"]
    shards, start = {}, 0
    for partition, count in counts.items():
        number = -(-count // CLIPS_PER_SHARD)
        shards[partition] = []
        for index in range(number):
            n = min(CLIPS_PER_SHARD, count - index * CLIPS_PER_SHARD)
            audio, words = clips(start, n)
            start += n
            name = records.shard_name(partition, index, number)
            labels = [labels_of[WORDS[w]] for w in words]
            shards[partition].append({"file": name, "count": records.write_shard(str(folder / name), audio, labels)})
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, 10 * 16000).astype(np.float32)
    records.write_manifest(str(folder), vocabulary.prepare_words_list(WORDS[:10]), settings, shards,
                           [noise], {"data_dir": "synthesized by bench_shard_memory.py"})


def write_wavs(folder: Path, size: int) -> None:
    """The same size clips as <word>/<speaker>_nohash_<n>.wav folders (split by hash)."""
    done = folder / ".complete"
    if done.exists():
        return
    for start in range(0, size, CLIPS_PER_SHARD):
        audio, words = clips(start, min(CLIPS_PER_SHARD, size - start))
        for i, (clip, word) in enumerate(zip(audio, words)):
            number = start + i
            speaker = hashlib.sha1(str(number // 5).encode()).hexdigest()[:8]
            path = folder / WORDS[word] / f"{speaker}_nohash_{number % 5}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(16000)
                handle.writeframes(clip.tobytes())
    noise = folder / "_background_noise_"
    noise.mkdir(exist_ok=True)
    with wave.open(str(noise / "noise.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(np.round(np.random.default_rng(1).uniform(-0.5, 0.5, 160000) * 32767)
                           .astype(np.int16).tobytes())
    done.touch()


def peak_rss(data_flags: list, steps: int) -> tuple:
    """(peak RSS in MB, seconds) of train.py on data_flags for steps steps."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, str(ROOT / "train.py"), *DS_CNN_S, *data_flags,
                   "--train_dir", scratch, "--summaries_dir", "", "--audio_cache_dir", "",
                   "--how_many_training_steps", str(steps), "--learning_rate", "0.001",
                   "--eval_step_interval", str(steps), "--batch_size", "100"]
        tick = time.time()
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = child.stdout.read().decode()
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise RuntimeError(output[-2000:])
        return usage.ru_maxrss / 1024, time.time() - tick


def main(args: argparse.Namespace) -> None:
    work = Path(args.work_dir)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.steps} steps of DS-CNN-S, batch 100")
    print(f"{'clips':>8s} {'path':>10s} {'data GB':>8s} {'peak RSS MB':>12s} {'seconds':>8s}", flush=True)
    for size in args.sizes:
        shards = work / f"shards_{size}"
        write_shards(shards, size)
        rss, seconds = peak_rss(["--shards_dir", str(shards)], args.steps)
        print(f"{size:8d} {'shards':>10s} {size * SAMPLES * 2 / 1e9:8.2f} {rss:12.0f} {seconds:8.0f}", flush=True)
        if size in args.memory_sizes:
            wavs = work / f"wavs_{size}"
            write_wavs(wavs, size)
            rss, seconds = peak_rss(["--data_url", "", "--data_dir", str(wavs)], args.steps)
            print(f"{size:8d} {'in memory':>10s} {size * SAMPLES * 2 / 1e9:8.2f} {rss:12.0f} {seconds:8.0f}",
                  flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    cli.run(main, make_parser())
