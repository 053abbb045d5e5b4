"""Wake-word figures of every Pretrained model on a 10-minute stream of real speech in real noise.

    python bench/bench_streaming.py

Runs the commands of train_commands.txt, Part 5: generate_streaming_test_wav.py
writes each stream once (the dev folder ../shared/data/speech_commands_test_v0.02_dev
for 10 minutes, every other flag at its default; the validation partition of the
training folder for 60 minutes, where streaming recipes are chosen; both in the
noise of ../shared/data/_background_noise_), then test_streaming_accuracy.py
--sweep_thresholds measures the int8 files of Pretrained_models/*/*/ that its lines
name, with their fingerprint flags and the default detection flags.
Prints a Markdown table: hit rate, wrong-label rate, false alarms per hour and mean
latency at the default threshold 0.7; the same at the lowest threshold of the sweep
with at most 1 false alarm per hour (read off the sweep on this same stream: a point
of the tradeoff curve, not a setting chosen for use); the seconds the stream took to
score (frames, windows, model) and the wall time of each command (with the start of
Python and TensorFlow). The dev folder is a test set: nothing is chosen from it.
"""
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("generate_streaming_test_wav.py", "test_streaming_accuracy.py")


def commands() -> list:
    """The argv of each Part 5 line of train_commands.txt, the stream first."""
    with open(os.path.join(REPO, "train_commands.txt")) as handle:
        lines = [shlex.split(line) for line in handle if line.startswith("python ")]
    return [argv for argv in lines if argv[1] in SCRIPTS]


def run(argv: list) -> float:
    """Runs `python script flags` in the repository, its output shown; returns the wall time."""
    print("$ " + shlex.join(argv), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable] + argv[1:], check=True, cwd=REPO)
    return time.perf_counter() - start


def rate(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def row(name: str, stream: str, figures: dict, seconds: float) -> str:
    """One table row: the default threshold, then the 1-false-alarm-per-hour point."""
    point = figures["at_1_false_alarm_per_hour"]
    cells = [f"`{name}`", stream, rate(figures["hit_rate"]), rate(figures["wrong_label_rate"]),
             f"{figures['false_alarms_per_hour']:.0f}",
             f"{figures['mean_latency_ms']:.0f}" if figures["mean_latency_ms"] is not None else "n/a"]
    if point is None:
        cells += ["not reached", "", ""]
    else:
        cells += [f"{point['threshold']:g}", rate(point["hit_rate"]),
                  f"{point['false_alarms_per_hour']:.0f}"]
    return "| " + " | ".join(cells + [f"{figures['scoring_s']:.1f}", f"{seconds:.1f}"]) + " |"


def main() -> None:
    rows = []
    for argv in commands():
        seconds = run(argv)
        if argv[1] == SCRIPTS[0]:
            print(f"\nStream written in {seconds:.1f} s\n")
            continue
        model = os.path.dirname(argv[argv.index("--tflite_path") + 1])
        stream = os.path.basename(argv[argv.index("--wav") + 1])
        with open(os.path.join(REPO, argv[argv.index("--output_json") + 1])) as handle:
            rows.append(row(os.path.relpath(model, "Pretrained_models"), stream,
                            json.load(handle), seconds))
    print("\n| model | stream | hit rate @0.7 | wrong label @0.7 | false alarms/h @0.7 "
          "| latency ms @0.7 | threshold at <= 1 FA/h | hit rate there | FA/h there | scoring s "
          "| command s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
