"""Training steps of whole train.py processes, ours and Arm's, on the same WAV clips (for bench_train_speed.py).

A step's cost without start-up, loading and the final evaluations is
(T(long) - T(short)) / (long - short), T the wall time of a whole process that
trains that many steps with one validation at its end.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARM_DIR = ROOT.parent / "shared" / "reference" / "arm_training"
WAV_COPY = Path("/tmp/bench_train_speed_wav")
EMPTY_ARCHIVE = "empty.tar.gz"


def testing_names(count: int) -> List[str]:
    """count speaker names that the data set's hash rule puts in the testing partition."""
    from kws.data import data_split
    names, number = [], 0
    while len(names) < count:
        name = f"{number:08x}_nohash_0.wav"
        if data_split.which_set(name, 10, 10) == "testing":
            names.append(name)
        number += 1
    return names


def wav_copy(data_dir: str, clips: int, seed: int = 0) -> Path:
    """A WAV folder that Arm's train.py reads: data_dir itself when it holds WAV word folders,
    else (made once) a copy of `clips` of its clips as 16-bit WAV, its noise recordings, a few
    clips named into the testing partition (Arm's script needs one) and an empty archive
    for --data_url."""
    import soundfile

    from kws.data import audio_io
    files = audio_io.word_folder_files(data_dir)
    if files and all(path.endswith(".wav") for path in files):
        folder = Path(data_dir)
    else:
        folder = WAV_COPY / f"{Path(data_dir).name}_{clips}"
        if not (folder / EMPTY_ARCHIVE).exists():
            shutil.rmtree(folder, ignore_errors=True)
            chosen = sorted(np.random.default_rng(seed).choice(sorted(files), min(clips, len(files)),
                                                                replace=False))
            decoded, kept, _ = audio_io.load_clips(list(chosen), 16000, 16000, None)
            for row, index in enumerate(kept):
                target = folder / Path(chosen[index]).parent.name / (Path(chosen[index]).stem + ".wav")
                target.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(target, decoded[row], 16000, subtype="PCM_16")
            for row, name in enumerate(testing_names(4)):  # into a keyword's folder: Arm needs one
                (folder / "yes").mkdir(parents=True, exist_ok=True)
                soundfile.write(folder / "yes" / name, decoded[row], 16000, subtype="PCM_16")
            noise = Path(data_dir) / "_background_noise_"
            if not noise.is_dir():
                noise = ROOT.parent / "shared" / "data" / "_background_noise_"
            shutil.copytree(noise, folder / "_background_noise_")
            with tarfile.open(folder / EMPTY_ARCHIVE, "w:gz"):
                pass
    return folder


def process_seconds(command: Sequence[str], cwd: Path, env: Dict[str, str]) -> float:
    """Wall seconds of one whole process; RuntimeError with its last lines if it fails."""
    start = time.perf_counter()
    done = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(command[:3])}... failed ({done.returncode}):\n{tail}")
    return time.perf_counter() - start


def ours(steps: int, model_flags: Sequence[str], data: Path, scratch: Path) -> List[str]:
    """Our train.py training `steps` steps with one validation at the end."""
    run = scratch / f"ours_{steps}_{time.monotonic_ns()}"
    return [sys.executable, str(ROOT / "train.py"), *model_flags, "--data_url", "", "--data_dir", str(data),
            "--how_many_training_steps", str(steps), "--learning_rate", "0.0005",
            "--eval_step_interval", str(steps), "--batch_size", "100",
            "--train_dir", str(run), "--summaries_dir", "", "--audio_cache_dir", ""]


def arms(steps: int, model_flags: Sequence[str], data: Path, scratch: Path) -> List[str]:
    """Arm's train.py training `steps` steps (two phases, as it needs) with one validation."""
    run = scratch / f"arm_{steps}_{time.monotonic_ns()}"
    half = steps // 2
    return [sys.executable, "train.py", *model_flags, "--data_url", f"file://{data / EMPTY_ARCHIVE}",
            "--data_dir", str(data), "--how_many_training_steps", f"{half},{steps - half}",
            "--learning_rate", "0.0005,0.0001", "--eval_step_interval", str(steps), "--batch_size", "100",
            "--train_dir", str(run), "--summaries_dir", str(run / "logs")]


def step_ms(build, short: int, long: int, cwd: Path, env: Dict[str, str], model_flags: Sequence[str],
            data: Path, scratch: Path) -> float:
    """Milliseconds per step of one pair of whole processes, (T(long) - T(short)) / (long - short)."""
    times = [process_seconds(build(steps, model_flags, data, scratch), cwd, env) for steps in (short, long)]
    return (times[1] - times[0]) * 1000 / (long - short)


def compare(model_flags: Sequence[str], data: Path, rounds: int, short: int, long: int,
            arm_dir: Path) -> Tuple[List[float], List[float]]:
    """(our ms/step, Arm's ms/step) of `rounds` alternating rounds, printed as they come."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    scratch = Path(WAV_COPY.parent / f"bench_train_speed_runs_{os.getpid()}")
    ours_ms, arm_ms = [], []
    try:
        for number in range(rounds):
            arm_ms.append(step_ms(arms, short, long, arm_dir, env, model_flags, data, scratch))
            ours_ms.append(step_ms(ours, short, long, ROOT, env, model_flags, data, scratch))
            print(f"round {number + 1}: Arm's train.py {arm_ms[-1]:.1f} ms/step, ours {ours_ms[-1]:.1f} "
                  f"ms/step: {arm_ms[-1] / ours_ms[-1]:.2f}x", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ours_ms, arm_ms


def summary(ours_ms: Sequence[float], arm_ms: Sequence[float]) -> str:
    """The medians and their ratio."""
    ours_median, arm_median = statistics.median(ours_ms), statistics.median(arm_ms)
    return (f"whole processes, median of {len(ours_ms)} rounds: Arm's train.py {arm_median:.1f} ms/step "
            f"({1000 / arm_median:.1f} steps/s), ours {ours_median:.1f} ms/step ({1000 / ours_median:.1f} "
            f"steps/s): ours is {arm_median / ours_median:.2f}x Arm's steps per second")
