"""Ablation of the real-speech recipe: which data source and augmentation helps DS_CNN_S.

Trains DS_CNN_S once per variant with train.py on the real training folder
(../shared/data/speech_commands_v0.01_train), selecting the best checkpoint on
its validation partition (real speakers outside the test set), and then only
measures that checkpoint on the real validation partition (silence made of
the real noise, the same for every variant) and on the dev half of the canonical test set
(test.py --test_dir). The table prints both; read it by the validation
column: the dev column is the test and chooses nothing.

    python bench/bench_real_recipe.py --steps 2000 --work_dir work/recipe \\
        --synth_unknown_dir work/synth_unknown --synth_keywords_dir work/synth_keywords

Variants build on one another: `real` is Arm's DS_CNN_S command on the folder
as it is (no _background_noise_ in it, so no noise and digital-zero silence);
`noise` adds the real noise recordings (--background_noise_dir); the others
each add one ingredient to `noise`. Each variant trains in its own
<work_dir>/<variant>; a finished one is reused, so --variants can build the
table piece by piece.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
DS_CNN_S = ["--model_architecture", "ds_cnn", "--model_size_info"] + \
    "5 64 10 4 2 2 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1".split() + \
    ["--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]

NOISE = ["--background_noise_dir", os.path.join(SHARED, "_background_noise_")]
# variant -> extra train.py flags on top of `noise` (None: the bare folder); "{unknown}" and
# "{keywords}" stand for the synthesized folders.
VARIANTS = {
    "real": None,
    "noise": [],
    "unknown_25": ["--unknown_percentage", "25"],
    "synth_unknown": ["--extra_unknown_dirs", "{unknown}"],
    "synth_keywords": ["--data_dir", "{real},{keywords}"],
    "resample": ["--resample", "0.15"],
    "snr": ["--background_snr_db", "0,20"],
    "reverb": ["--reverb_probability", "0.5"],
    "eq": ["--eq_db", "20"],
    "specaugment": ["--time_masks", "2", "--time_mask_max", "5",
                    "--frequency_masks", "1", "--frequency_mask_max", "2"],
}


def train_command(name: str, train_dir: str, args: argparse.Namespace) -> list:
    """train.py's command line for one variant: Arm's three learning-rate phases over --steps."""
    phases = [args.steps // 3, args.steps // 3, args.steps - 2 * (args.steps // 3)]
    flags = [sys.executable, os.path.join(REPO, "train.py"), "--data_url", "",
             "--data_dir", args.real_dir, *DS_CNN_S,
             "--how_many_training_steps", ",".join(map(str, phases)),
             "--learning_rate", "0.0005,0.0001,0.00002", "--batch_size", "100",
             "--eval_step_interval", str(max(1, args.steps // 5)), "--summaries_dir", "",
             "--train_dir", train_dir, "--seed", str(args.seed)]
    extra = VARIANTS[name]
    if extra is None:
        return flags
    folders = {"{unknown}": args.synth_unknown_dir, "{keywords}": args.synth_keywords_dir,
               "{real}": args.real_dir}
    for placeholder, folder in folders.items():
        extra = [part.replace(placeholder, folder or "") for part in extra]
    return flags + NOISE + extra  # a later --data_dir replaces the first


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Trains (unless done) and measures one variant; returns its row."""
    train_dir = os.path.join(args.work_dir, name)
    log_path = os.path.join(args.work_dir, f"{name}.log")
    os.makedirs(train_dir, exist_ok=True)
    start = time.time()
    if not os.path.exists(os.path.join(train_dir, "done")):
        command = train_command(name, train_dir, args)
        with open(log_path, "w") as log:
            log.write(" ".join(repr(part) if part == "" else part for part in command) + "\n")
            log.flush()
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=REPO)
        open(os.path.join(train_dir, "done"), "w").close()
    figures = {}
    for partition, flags in (("validation", ["--data_dir", args.real_dir, *NOISE]),
                             ("dev", ["--test_dir", args.dev_dir])):
        report = os.path.join(train_dir, f"{partition}.json")
        if not os.path.exists(report):
            subprocess.run([sys.executable, os.path.join(REPO, "test.py"), "--data_url", "",
                            *DS_CNN_S, "--checkpoint", os.path.join(train_dir, "best"),
                            "--seed", str(args.seed), *flags, "--output_json", report],
                           stdout=subprocess.DEVNULL, check=True, cwd=REPO)
        with open(report) as handle:
            figures[partition] = next(iter(json.load(handle).values()))
    dev = figures["dev"]
    matrix = dev["confusion_matrix"]
    return {"variant": name, "validation": figures["validation"]["accuracy"],
            "dev": dev["accuracy"], "dev_silence": matrix[0][0] / max(1, sum(matrix[0])),
            "dev_unknown": matrix[1][1] / max(1, sum(matrix[1])),
            "minutes": (time.time() - start) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real_dir", default=os.path.join(SHARED, "speech_commands_v0.01_train"))
    parser.add_argument("--dev_dir", default=os.path.join(SHARED, "speech_commands_test_v0.02_dev"))
    parser.add_argument("--synth_unknown_dir", default=None,
                        help="synthesize_dataset.py output of the words the real folder lacks")
    parser.add_argument("--synth_keywords_dir", default=None,
                        help="synthesize_dataset.py output of the ten keywords")
    parser.add_argument("--work_dir", default="/tmp/bench_real_recipe")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=59185)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    for folder in (args.real_dir, args.dev_dir):
        if not os.path.isdir(folder):
            sys.exit(f"skipped: {folder} is not here (it lives in ../shared)")
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    for name in names:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name}; choose from {', '.join(VARIANTS)}")
        needs = {"synth_unknown": args.synth_unknown_dir, "synth_keywords": args.synth_keywords_dir}
        if name in needs and not (needs[name] and os.path.isdir(needs[name])):
            sys.exit(f"variant {name} needs --{name}_dir, a folder")
    os.makedirs(args.work_dir, exist_ok=True)
    print(f"{'variant':<16}{'validation':>11}{'dev':>8}{'silence':>9}{'unknown':>9}{'min':>6}", flush=True)
    rows = []
    for name in names:
        row = run_variant(name, args)
        rows.append(row)
        print(f"{row['variant']:<16}{row['validation']:>11.4f}{row['dev']:>8.4f}"
              f"{row['dev_silence']:>9.4f}{row['dev_unknown']:>9.4f}{row['minutes']:>6.1f}", flush=True)
    with open(os.path.join(args.work_dir, "table.json"), "w") as handle:
        json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
