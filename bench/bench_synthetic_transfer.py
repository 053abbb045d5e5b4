"""Ablation of the synthetic-to-real recipe: which augmentation / data source helps.

Trains DS_CNN_S once per variant on synthesized keywords (train.py), then
measures the best checkpoint on the real evaluation folder (test.py
--test_dir) and reports its accuracy next to the accuracy on the synthesized
test partition:

    python bench/bench_synthetic_transfer.py --espeak_dir /tmp/sx/espeak \\
        --piper_dir /tmp/sx/piper --steps 3000 --work_dir /tmp/sx/bench

The synthesized sets come from synthesize_dataset.py (see the report printed
with --help for the commands). --espeak_dir and --piper_dir are joined into
one folder of symbolic links for the variants that use both. Model selection
is on --validation_dir (real clips of other speakers), never on --dev_dir,
which is only measured. Each variant is trained once, in its own
<work_dir>/<variant> (an existing finished run is reused), so the table can
be built incrementally with --variants.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
DS_CNN_S = ["--model_architecture", "ds_cnn", "--model_size_info"] + \
    "5 64 10 4 2 2 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1".split() + \
    ["--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]

AUGMENTATION = {
    "resample": ["--resample", "0.15"],
    "snr": ["--background_snr_db", "0,20", "--background_frequency", "0.8"],
    "reverb": ["--reverb_probability", "0.5"],
    "gain": ["--gain_db", "6"],
    "specaugment": ["--time_masks", "2", "--time_mask_max", "5",
                    "--frequency_masks", "1", "--frequency_mask_max", "2"],
}
FULL = ("both", "real_unknown", "validation_dir") + tuple(AUGMENTATION)

# variant -> (data: espeak|piper|both|both_piper_x3 (Piper clips counted 3 times), ingredients)
VARIANTS = {
    "baseline_espeak": ("espeak", ()),
    "full": ("both", FULL),
    "full_espeak_only": ("espeak", tuple(i for i in FULL if i != "both")),
    "full_piper_only": ("piper", tuple(i for i in FULL if i != "both")),
}
VARIANTS["full_piper_x3"] = ("both_piper_x3", FULL)
for _name in ("real_unknown", "validation_dir") + tuple(AUGMENTATION):
    VARIANTS[f"full_without_{_name}"] = ("both", tuple(i for i in FULL if i != _name))


def link_both(espeak_dir: str, piper_dir: str, both_dir: str, piper_repeats: int = 1) -> str:
    """A folder of symbolic links to every clip of both sets (words merged); each Piper
    clip linked piper_repeats times (same speaker id, so the same partition)."""
    for source, repeats in ((espeak_dir, 1), (piper_dir, piper_repeats)):
        for path, repeat in ((p, r) for p in glob.glob(os.path.join(source, "*", "*.wav"))
                             for r in range(repeats)):
            word = os.path.basename(os.path.dirname(path))
            if word == "_background_noise_" and source != espeak_dir:
                continue
            name = os.path.basename(path)
            if repeat:
                name = name[:-len(".wav")] + f"_repeat{repeat}.wav"
            target = os.path.join(both_dir, word, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.symlink(os.path.abspath(path), target)
            except FileExistsError:
                pass
    return both_dir


def train_flags(data_dir: str, ingredients, steps: int, train_dir: str, args) -> list:
    """train.py's command line for one variant."""
    final = max(1, steps // 6)
    flags = [sys.executable, os.path.join(REPO, "train.py"), "--data_url", "", "--data_dir", data_dir,
             *DS_CNN_S, "--how_many_training_steps", f"{steps - final},{final}",
             "--learning_rate", "0.001,0.0002", "--batch_size", str(args.batch_size),
             "--eval_step_interval", str(max(1, steps // 6)), "--summaries_dir", "",
             "--train_dir", train_dir, "--seed", str(args.seed)]
    if "real_unknown" in ingredients:
        flags += ["--extra_unknown_dirs", args.unknown_dir]
    if "validation_dir" in ingredients:
        flags += ["--validation_dir", args.validation_dir]
    for name, extra in AUGMENTATION.items():
        if name in ingredients:
            flags += extra
    return flags


def run_variant(name: str, args) -> dict:
    """Trains (unless done) and measures one variant; returns its row."""
    engine, ingredients = VARIANTS[name]
    data_dir = {"espeak": args.espeak_dir, "piper": args.piper_dir,
                "both": os.path.join(args.work_dir, "data_both"),
                "both_piper_x3": os.path.join(args.work_dir, "data_both_piper_x3")}[engine]
    train_dir = os.path.join(args.work_dir, name)
    log_path = os.path.join(args.work_dir, f"{name}.log")
    os.makedirs(train_dir, exist_ok=True)
    start = time.time()
    if not os.path.exists(os.path.join(train_dir, "done")):
        command = train_flags(data_dir, ingredients, args.steps, train_dir, args)
        with open(log_path, "w") as log:
            log.write(" ".join(repr(part) if part == "" else part for part in command) + "\n")
            log.flush()
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=REPO)
        open(os.path.join(train_dir, "done"), "w").close()
    with open(log_path) as log:
        text = log.read()
    found = re.findall(r"Final test accuracy = ([0-9.]+)", text)
    selection = re.findall(r"validation accuracy ([0-9.]+)", text)
    report = os.path.join(train_dir, "dev.json")
    if not os.path.exists(report):
        subprocess.run([sys.executable, os.path.join(REPO, "test.py"), "--data_url", "",
                        *DS_CNN_S, "--checkpoint", os.path.join(train_dir, "best"),
                        "--test_dir", args.dev_dir, "--output_json", report],
                       stdout=subprocess.DEVNULL, check=True, cwd=REPO)
    with open(report) as handle:
        dev = next(iter(json.load(handle).values()))["accuracy"]
    return {"variant": name, "data": engine, "dev": dev,
            "synthetic_test": float(found[-1]) if found else float("nan"),
            "best_selection": max(map(float, selection)) if selection else float("nan"),
            "minutes": (time.time() - start) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--espeak_dir", required=True, help="synthesize_dataset.py --engine espeak output")
    parser.add_argument("--piper_dir", required=True, help="synthesize_dataset.py --engine piper output")
    parser.add_argument("--work_dir", default="/tmp/bench_synthetic_transfer")
    parser.add_argument("--dev_dir", default=os.path.join(SHARED, "speech_commands_test_v0.02_dev"))
    parser.add_argument("--validation_dir", default=os.path.join(SHARED, "sample_v0.01"))
    parser.add_argument("--unknown_dir", default=os.path.join(SHARED, "speech_commands_v0.01_train"),
                        help="real clips whose non-keyword words join _unknown_")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=59185)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    for folder in (args.dev_dir, args.validation_dir, args.unknown_dir):
        if not os.path.isdir(folder):
            sys.exit(f"skipped: {folder} is not here (it lives in ../shared)")
    os.makedirs(args.work_dir, exist_ok=True)
    link_both(args.espeak_dir, args.piper_dir, os.path.join(args.work_dir, "data_both"))
    link_both(args.espeak_dir, args.piper_dir, os.path.join(args.work_dir, "data_both_piper_x3"), 3)
    rows = []
    print(f"{'variant':<34}{'data':<8}{'dev':>8}{'synth test':>12}{'selection':>11}{'min':>6}", flush=True)
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name}; choose from {', '.join(VARIANTS)}")
        row = run_variant(name, args)
        rows.append(row)
        print(f"{row['variant']:<34}{row['data']:<8}{row['dev']:>8.4f}{row['synthetic_test']:>12.4f}"
              f"{row['best_selection']:>11.4f}{row['minutes']:>6.1f}", flush=True)
    with open(os.path.join(args.work_dir, "table.json"), "w") as handle:
        json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
