"""End to end, as a user runs it: test_tflite.py against Arm's way of evaluating a .tflite.

    python bench/bench_tflite_eval.py [--repeats 3]

Arm's DS_CNN_S int8 file on the dev folder of ../shared (a tiny converted dnn on 400
generated clips where ../shared is absent). Each way runs in a fresh process, timed
from start to exit (interpreter start and imports included):

- Arm's way: bench/arm_test_tflite_loop.py (TensorFlow imported, TensorFlow's audio
  ops on each clip, a new interpreter for each clip), the clips in the OS page cache;
- ours: `python test_tflite.py ...`, cold (the clips just evicted from the OS page
  cache with posix_fadvise; its --audio_cache_dir, a fresh folder, holds no WAVs)
  and warm.
The runs alternate (ours cold, Arm's, ours warm), --repeats of each, and their
medians are compared: wall time, and the CPU time of the process. Both ways must
print the same accuracy. Then where our time goes, in this process (the imports in
fresh ones): imports, reading the clips, fingerprints, the interpreter.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
DEV_SET = os.path.join(SHARED, "data", "speech_commands_test_v0.02_dev")
ARM_DS_CNN_S = os.path.join(SHARED, "reference", "arm_pretrained", "DS_CNN", "DS_CNN_S",
                            "ds_cnn_s_quantized.tflite")
FEATURE_FLAGS = ["--window_size_ms", "40", "--window_stride_ms", "20", "--dct_coefficient_count", "10"]


def generated_setup(folder: str) -> Tuple[str, str]:
    """A tiny converted dnn and 400 generated clips in label folders (no ../shared)."""
    import wave

    import numpy as np

    from kws import cli, features, vocabulary
    from kws.export import quantization
    from kws.models import registry

    def write_wav(path, samples):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with wave.open(path, "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes(np.asarray(samples, dtype="<i2").tobytes())

    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    words = vocabulary.prepare_words_list(vocabulary.DEFAULT_WANTED_WORDS.split(","))
    rng = np.random.default_rng(0)
    for n in range(400):
        write_wav(os.path.join(folder, words[n % len(words)], f"clip{n}.wav"),
                  rng.integers(-2000, 2000, 16000))
    model = registry.create_model(settings, "dnn", (64, 64), label_count=len(words))
    mode = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
    content = quantization.to_tflite(model, mode, rng.normal(0, 10, (50, settings.fingerprint_size)))
    path = os.path.join(folder, "dnn.tflite")
    cli.write_atomically(path, content)
    return path, folder


def evict(folder: str) -> None:
    """Drops the files under folder from the OS page cache: the next read is from the disk."""
    for base, _, names in os.walk(folder):
        for name in names:
            descriptor = os.open(os.path.join(base, name), os.O_RDONLY)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(descriptor)


def timed(command: List[str]) -> Tuple[float, float, str]:
    """Wall and CPU seconds of a command in a fresh process, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{run.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, run.stdout


def accuracy(output: str) -> float:
    """The accuracy that test_tflite.py or Arm's loop printed."""
    ours = re.search(r"accuracy (\d\.\d+)", output)
    if ours:
        return float(ours.group(1))
    return float(re.search(r"accuracy = ([\d.]+)%", output).group(1)) / 100


def breakdown(tflite_path: str, test_dir: str) -> str:
    """Where test_tflite.py's time goes: python start, imports, reading, fingerprints, interpreter."""
    start_s = min(timed([sys.executable, "-c", "pass"])[0] for _ in range(3))
    import_s = min(timed([sys.executable, "-c", "import test_tflite"])[0] for _ in range(3)) - start_s
    from kws import evaluation, features, vocabulary
    from kws.data import speech_commands
    from kws.runtime import tflite_model

    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    words = vocabulary.prepare_words_list(vocabulary.DEFAULT_WANTED_WORDS.split(","))
    start = time.perf_counter()
    clips, labels, _ = speech_commands.load_evaluation_folder(test_dir, words, settings)
    read_s = time.perf_counter() - start
    fingerprints = features.Fingerprinter(settings)(clips)
    fingerprint_s = time.perf_counter() - start - read_s
    evaluation.evaluate(tflite_model.TFLiteModel(tflite_path), fingerprints, labels, len(words))
    interpreter_s = time.perf_counter() - start - read_s - fingerprint_s
    return (f"python start {start_s:.2f} s, imports {import_s:.2f} s, reading {read_s:.2f} s, "
            f"fingerprints {fingerprint_s:.2f} s, interpreter {interpreter_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="Runs of each (alternating; their medians are compared).")
    args = parser.parse_args()
    temporary = tempfile.TemporaryDirectory()
    if os.path.isdir(DEV_SET) and os.path.isfile(ARM_DS_CNN_S):
        tflite_path, test_dir = ARM_DS_CNN_S, DEV_SET
        print(f"Arm's DS_CNN_S int8 on {DEV_SET}; load average {os.getloadavg()[0]:.1f}, "
              f"{os.cpu_count()} CPUs")
    else:
        tflite_path, test_dir = generated_setup(temporary.name)
        print(f"{SHARED} absent: a tiny dnn on 400 generated clips")
    ours = [sys.executable, "test_tflite.py", "--tflite_path", tflite_path, "--test_dir", test_dir,
            "--audio_cache_dir", os.path.join(temporary.name, "cache")] + FEATURE_FLAGS
    arm_way = [sys.executable, os.path.join("bench", "arm_test_tflite_loop.py"),
               "--tflite_path", tflite_path, "--test_dir", test_dir]

    cold, arm, warm = [], [], []
    for _ in range(args.repeats):
        evict(test_dir)
        cold.append(timed(ours))
        arm.append(timed(arm_way))
        warm.append(timed(ours))
    count = int(re.search(r"\(N=(\d+)\)", cold[0][2]).group(1))
    medians = {}
    for name, runs in (("Arm's way (TF's ops and an interpreter per clip)", arm),
                       ("ours, cold", cold), ("ours, warm", warm)):
        wall, cpu = medians[name] = tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        print(f"{name}: {wall:.2f} s = {count / wall:,.0f} clips/s (CPU {cpu:.2f} s; runs: "
              f"{' '.join(f'{run[0]:.2f}' for run in runs)} s)")
    (arm_s, arm_cpu), (cold_s, _), (warm_s, warm_cpu) = medians.values()
    figures = {accuracy(output) for _, _, output in arm + cold + warm}
    print(f"ratio of the medians: {arm_s / warm_s:.1f}x warm, {arm_s / cold_s:.1f}x cold, "
          f"{arm_cpu / warm_cpu:.1f}x in CPU time warm (accuracy "
          f"{' / '.join(f'{value:.4f}' for value in sorted(figures))} on {count} clips)")
    print(f"ours, where the time goes (warm): {breakdown(tflite_path, test_dir)}")
    if len(figures) != 1:
        sys.exit("the two ways disagree on the accuracy")


if __name__ == "__main__":
    main()
