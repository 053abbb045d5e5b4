"""Training step of BC-ResNet-1 before and after kws/models/bc_resnet.py's training paths, beside DS-CNN-S.

    python bench/bench_bc_resnet_step.py [--before REV] [--steps 10] [--rounds 5] [--warmup 5]
                                         [--batch_size 100]

Times training.Trainer.train_step (the forward pass in training mode, sparse
categorical cross entropy, Adam) on random fingerprints and labels (a pool of 4
batches) of --batch_size, for three models:
  bc_resnet before  BC-ResNet-1 (base 8) of kws/models/bc_resnet.py as of git revision --before
                    (default: the commit that added bc_resnet, before its training paths),
  bc_resnet after   the same of the working tree's kws/models/bc_resnet.py,
  ds_cnn_s          DS-CNN-S (Arm's 10 MFCCs of 40 ms windows every 20 ms), the reference,
BC-ResNet on its published features (40 log-mel bands of 30 ms windows every 10 ms:
98 frames). After --warmup steps each, the models take turns, --rounds rounds of
--steps steps, so that a change in the machine's load reaches all of them. Printed:
the median and the lowest wall ms/step of the rounds, the median process CPU
ms/step (all threads: with C cores, wall >= CPU / C), and the load average before
and after.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kws import cli  # noqa: E402
from kws import tf_env

BEFORE = "ea8c355"  # models: bc_resnet, BC-ResNet (Kim et al., 2021) with sub-spectral norm
DS_CNN_S = [5, 64, 10, 4, 2, 2] + [64, 3, 3, 1, 1] * 4
LABELS = 12
POOL = 4  # batches of random fingerprints, cycled


def make_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE,
                        help="Git revision of the kws/models/bc_resnet.py to time as 'before'.")
    parser.add_argument("--steps", type=cli.positive_int, default=10, help="Timed steps per round.")
    parser.add_argument("--rounds", type=cli.positive_int, default=5, help="Rounds of every model.")
    parser.add_argument("--warmup", type=cli.positive_int, default=5,
                        help="Untimed steps of each model first (tracing, allocations).")
    parser.add_argument("--batch_size", type=cli.positive_int, default=100)
    return parser


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def module_at(revision: str) -> types.ModuleType:
    """kws/models/bc_resnet.py as of revision, as a module of its own (import bc_resnet after it: its
    SubSpectralNorm registers last)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:kws/models/bc_resnet.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("bc_resnet_before")
    module.__file__ = f"kws/models/bc_resnet.py@{revision}"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def stepper(model, settings, args: argparse.Namespace, train_dir: str) -> Callable[[int], None]:
    """A function that runs count of Trainer.train_step's steps on model and waits for them."""
    from kws.training import trainer as training

    tf = tf_env.import_tensorflow()
    schedule = training.TrainingSettings((15000, 3000), (0.001, 0.0001), args.batch_size, 400,
                                         train_dir, "bc_resnet")
    trainer = training.Trainer(model, types.SimpleNamespace(model_settings=settings), schedule)
    generator = tf.random.Generator.from_seed(0)
    pool = [(generator.normal([args.batch_size, settings.fingerprint_size]),
             generator.uniform([args.batch_size], 0, LABELS, tf.int32)) for _ in range(POOL)]

    def run(count: int) -> None:
        loss = None
        for step in range(count):
            loss, _ = trainer.train_step(*pool[step % POOL])
        float(loss)

    return run


def main(args: argparse.Namespace) -> None:
    before = module_at(args.before)
    from kws import features
    from kws.models import bc_resnet, registry

    tf = tf_env.import_tensorflow()
    tf.keras.utils.set_random_seed(0)
    published = features.prepare_model_settings(16000, 1000, 30, 10, 40, features.LOG_MEL)
    arm = features.prepare_model_settings(16000, 1000, 40, 20, 10, features.MFCC)
    built = {f"bc_resnet before ({args.before})":
             (before.create_bc_resnet_model(published, [8]), published),
             "bc_resnet after (working tree)":
             (bc_resnet.create_bc_resnet_model(published, [8], label_count=LABELS), published),
             "ds_cnn_s": (registry.create_model(arm, "ds_cnn", DS_CNN_S, label_count=LABELS), arm)}
    with tempfile.TemporaryDirectory(prefix="bench_bc_resnet_step_") as scratch:
        runs = {name: stepper(model, settings, args, os.path.join(scratch, str(index)))
                for index, (name, (model, settings)) in enumerate(built.items())}
        print(f"batch {args.batch_size}, TF {tf.__version__}, {os.cpu_count()} CPUs; {load()}",
              flush=True)
        for run in runs.values():
            run(args.warmup)
        times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run(args.steps)
                times[name].append(((time.perf_counter() - wall) * 1000 / args.steps,
                                    (time.process_time() - cpu) * 1000 / args.steps))
    print(f"{'':34s} {'wall ms/step':>12s} {'lowest':>8s} {'CPU ms/step':>12s}")
    medians = {}
    for name, rounds in times.items():
        medians[name] = statistics.median(wall for wall, _ in rounds)
        print(f"{name:34s} {medians[name]:12.1f} {min(wall for wall, _ in rounds):8.1f} "
              f"{statistics.median(cpu for _, cpu in rounds):12.1f}")
    old, new, reference = medians.values()
    print(f"bc_resnet after / before: {new / old:.2f}; before / ds_cnn_s: {old / reference:.1f}, "
          f"after / ds_cnn_s: {new / reference:.1f}")
    print(f"after: {load()}")


if __name__ == "__main__":
    cli.run(main, make_parser())
