"""Training speed of DS-CNN-S: train.py end to end, the model alone, the input pipeline alone, and Arm's train.py.

    python bench/bench_train_speed.py [--data_dir DIR | --shards_dir DIR] [--steps 200] [--warmup 20]
                                      [--mixed_precision bfloat16] [--fingerprints_on host|device]
                                      [--augmentation_domain auto|spectrum|audio]
                                      [--arm_dir DIR] [--arm_rounds 2] [--model ds_cnn_s|tc_resnet|bc_resnet]

DS-CNN-S with Arm's flags (40 ms window, 20 ms stride, 10 MFCCs, batch 100) on
--data_dir (default: /tmp/bench_synth, synthesized by synthesize_dataset.py with
60 clips per word if absent). Every figure excludes --warmup steps (tracing,
first allocations) and times --steps steps:
  (a)  Trainer.run: train.py's own loop over AudioProcessor.training_dataset
       (validation stubbed out);
  (a') the same dataset and Trainer.train_step with no per-step host sync
       (what (a) would cost without its per-step .numpy()/float() calls);
  (b)  Trainer.train_step over precomputed fingerprints: the model-only ceiling;
  (a") the same with the fingerprints computed inside the step (the other
       --fingerprints_on place: on the accelerator when there is one);
  (b)  Trainer.train_step over precomputed fingerprints: the model-only ceiling;
  (c)  training_dataset alone, and its two stages: the numpy generator
       (batching, time shift, background noise) and graph_fingerprints (MFCC).
Then (a)/(b), and for (a') and (a") the share of the loop's wall time spent waiting
for the next batch (the tf.data iterator): the time the device waits for input.
--mixed_precision bfloat16 builds the model under Keras' mixed_bfloat16 policy;
--shards_dir reads the training clips from prepare_data.py's shards instead.
CPU ms/step is the process's CPU time (all threads) per step: with C cores, wall >= CPU / C.
The load average is printed before and after: figures taken on a busy machine are slower.

Then, unless --arm_rounds is 0 or --arm_dir (Arm's training scripts, ../shared/reference/
arm_training, run from there, never copied) is absent, whole processes side by side: Arm's
train.py and ours with the same flags on the same WAV clips (--data_dir if it holds WAV,
else a WAV copy of --wav_clips of its clips, made once), each timed at --process_steps
SHORT,LONG steps; (T(LONG) - T(SHORT)) / (LONG - SHORT) is a step without start-up, loading
and the final evaluations. The runs alternate, --arm_rounds times, and the ratio of the
medians is printed.
"""
import argparse
import contextlib
import io
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import whole_process  # noqa: E402

from kws import cli  # noqa: E402
from kws import tf_env, vocabulary  # noqa: E402
from kws.cli import UsageError  # noqa: E402

DEFAULT_DATA_DIR = Path("/tmp/bench_synth")
BACKGROUND_DIR = ROOT.parent / "shared" / "data" / "_background_noise_"
MODELS = {  # the flags of each model the bench can time; Arm's scripts know ds_cnn only
    "ds_cnn_s": ["--model_architecture", "ds_cnn", "--model_size_info",
                 *"5 64 10 4 2 2 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1 64 3 3 1 1".split(),
                 "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"],
    "tc_resnet": ["--model_architecture", "tc_resnet", "--model_size_info", "3", "32", "36", "36", "40",
                  "--dct_coefficient_count", "40", "--window_size_ms", "40", "--window_stride_ms", "20"],
    "bc_resnet": ["--model_architecture", "bc_resnet", "--model_size_info", "8", "--preprocess", "log_mel",
                  "--dct_coefficient_count", "40", "--window_size_ms", "30", "--window_stride_ms", "10"],
}
ARM_MODELS = ("ds_cnn_s",)


def make_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"Data folder (one folder per word); default {DEFAULT_DATA_DIR}, "
                             "synthesized when absent.")
    parser.add_argument("--steps", type=cli.positive_int, default=200, help="Timed steps per figure.")
    parser.add_argument("--warmup", type=cli.positive_int, default=20, help="Untimed steps before each figure.")
    parser.add_argument("--batch_size", type=cli.positive_int, default=100)
    parser.add_argument("--mixed_precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--fingerprints_on", choices=("host", "device"), default="host",
                        help="Where (a) computes the fingerprints; (a\") uses the other place.")
    parser.add_argument("--shards_dir", default=None, help="Train from these shards (prepare_data.py).")
    parser.add_argument("--model", choices=MODELS, default="ds_cnn_s", help="Which model to time.")
    parser.add_argument("--augmentation_domain", choices=("auto", "spectrum", "audio"), default="auto",
                        help="train.py's --augmentation_domain for (a), (a') and (c).")
    parser.add_argument("--arm_dir", default=str(whole_process.ARM_DIR),
                        help="Arm's training scripts (skipped, saying so, when absent).")
    parser.add_argument("--arm_rounds", type=int, default=2,
                        help="Alternating rounds of whole processes, Arm's and ours (0: none).")
    parser.add_argument("--process_steps", type=cli.comma_list(cli.positive_int), default="50,350",
                        help="SHORT,LONG steps of the whole processes.")
    parser.add_argument("--wav_clips", type=cli.positive_int, default=7000,
                        help="Clips of the WAV copy of a --data_dir that is not WAV.")
    return parser


def data_dir_from_flags(args: argparse.Namespace) -> Path:
    """--data_dir, or the default synthesized set, made on first use."""
    if args.data_dir:
        if not os.path.isdir(args.data_dir):
            raise UsageError(f"--data_dir {args.data_dir} is not a folder")
        return Path(args.data_dir)
    if not DEFAULT_DATA_DIR.is_dir():
        background = ["--background_dir", str(BACKGROUND_DIR)] if BACKGROUND_DIR.is_dir() else []
        print(f"Synthesizing {DEFAULT_DATA_DIR} (once) ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "synthesize_dataset.py"), "--output_dir",
                        str(DEFAULT_DATA_DIR), "--clips_per_word", "60", *background],
                       check=True, stdout=subprocess.DEVNULL)
    return DEFAULT_DATA_DIR


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def ms_per_step(run_steps: Callable[[int], None], warmup: int, steps: int) -> Tuple[float, float]:
    """Wall and process-CPU milliseconds per step of run_steps(steps), after run_steps(warmup)."""
    run_steps(warmup)
    wall, cpu = time.perf_counter(), time.process_time()
    run_steps(steps)
    return (time.perf_counter() - wall) * 1000 / steps, (time.process_time() - cpu) * 1000 / steps


def waiting_share(loop: Callable[[int], float], warmup: int, steps: int) -> Tuple[float, float, float]:
    """(wall ms/step, CPU ms/step, share of wall time waiting for input) of loop(steps), which
    returns its seconds spent waiting for batches, after loop(warmup)."""
    loop(warmup)
    wall, cpu = time.perf_counter(), time.process_time()
    waited = loop(steps)
    wall = time.perf_counter() - wall
    return wall * 1000 / steps, (time.process_time() - cpu) * 1000 / steps, waited / wall


def main(args: argparse.Namespace) -> None:
    from kws import features, graph_features
    from kws.data import augmentation, dataset
    from kws.data import shards as records
    from kws.data import sources, speech_commands
    from kws.models import registry
    from kws.training import distribute
    from kws.training import trainer as training

    tf = tf_env.import_tensorflow()
    data_dir = data_dir_from_flags(args)
    scratch = tempfile.mkdtemp(prefix="bench_train_speed_")
    parser = cli.make_parser("train.py's flags")
    for add_flags in (speech_commands.add_data_flags, vocabulary.add_label_flags, features.add_feature_flags,
                      augmentation.add_augmentation_flags, registry.add_model_flags,
                      training.add_training_flags, distribute.add_distribution_flags,
                      records.add_shard_flags):
        add_flags(parser)
    shards = ["--shards_dir", args.shards_dir] if args.shards_dir else []
    if not (data_dir / "_background_noise_").is_dir() and BACKGROUND_DIR.is_dir():
        shards += ["--background_noise_dir", str(BACKGROUND_DIR)]  # e.g. the real Opus folder
    flags = parser.parse_args(
        MODELS[args.model] + ["--augmentation_domain", args.augmentation_domain] + shards + ["--mixed_precision", args.mixed_precision, "--fingerprints_on", args.fingerprints_on,
                             "--data_url", "", "--data_dir", str(data_dir), "--batch_size", str(args.batch_size),
                    "--train_dir", os.path.join(scratch, "train"),
                    "--summaries_dir", os.path.join(scratch, "logs"),
                    "--how_many_training_steps", str(10 * (args.warmup + args.steps)),
                    "--learning_rate", "0.0005", "--eval_step_interval", "1000000"])
    tf.keras.utils.set_random_seed(flags.seed)
    device_settings = distribute.DeviceSettings.from_flags(flags)
    distribute.set_precision(device_settings.mixed_precision)
    settings = features.settings_from_flags(flags)
    model = registry.create_model(settings, flags.model_architecture, flags.model_size_info,
                                  label_count=len(vocabulary.words_list_from_flags(flags)))
    processor = sources.training_data(dataset.DataSettings.from_flags(flags), settings, flags.shards_dir)
    trainer = training.Trainer(model, processor, training.TrainingSettings.from_flags(flags),
                               on_device=distribute.fingerprints_on_device(device_settings.fingerprints_on))
    trainer.validate = lambda: 0.0  # the figures are of training steps only
    device = tf.config.list_logical_devices("GPU")
    print(f"{args.model}, batch {args.batch_size}, {processor.set_size('training')} training clips "
          f"in {args.shards_dir or data_dir}; TF {tf.__version__}, {os.cpu_count()} CPUs, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op threads, "
          f"{device[0].name if device else 'no GPU'}, policy {tf.keras.mixed_precision.global_policy().name}, "
          f"(a) fingerprints on the {args.fingerprints_on}")
    print(f"before: {load()}", flush=True)

    def trainer_run(count: int) -> None:
        trainer.total_steps = int(trainer.step.numpy()) + count
        with contextlib.redirect_stdout(io.StringIO()):  # its every-100-steps progress lines
            trainer.run()

    def lean_loop(on_device: bool) -> Callable[[int], float]:
        def loop(count: int) -> float:
            trainer.on_device = on_device
            batches = iter(processor.training_dataset(args.batch_size, int(trainer.step.numpy()), on_device))
            loss, waited = None, 0.0
            for _ in range(count):
                tick = time.perf_counter()
                x, labels = next(batches)
                waited += time.perf_counter() - tick
                loss, _ = trainer.train_step(x, labels)
            trainer.step.assign_add(count)
            float(loss)
            trainer.on_device = args.fingerprints_on == "device"
            return waited
        return loop

    pool = [batch for batch in processor.training_dataset(args.batch_size).take(10)]

    def model_only(count: int) -> None:
        loss = None
        for fingerprints, labels in itertools.islice(itertools.cycle(pool), count):
            loss, _ = trainer.train_step(fingerprints, labels)
        float(loss)

    def pipeline(count: int) -> None:
        for _ in processor.training_dataset(args.batch_size).take(count):
            pass

    def generator(count: int) -> None:
        for _ in itertools.islice(processor.training_batches(args.batch_size), count):
            pass

    audio = [x["audio"] for x, _ in processor.training_dataset(args.batch_size, on_device=True).take(10)]
    fingerprint = tf.function(lambda clips: graph_features.graph_fingerprints(clips, settings))

    def fingerprinter(count: int) -> None:
        for clips in itertools.islice(itertools.cycle(audio), count):
            fingerprint(clips).numpy()

    here = args.fingerprints_on == "device"
    end_to_end = ms_per_step(trainer_run, args.warmup, args.steps)
    lean = waiting_share(lean_loop(here), args.warmup, args.steps)
    other = waiting_share(lean_loop(not here), args.warmup, args.steps)
    model_step = ms_per_step(model_only, args.warmup, args.steps)
    figures: List[Tuple[str, Tuple[float, float]]] = [
        ("(a)  train.py end to end (Trainer.run)", end_to_end),
        ("(a') dataset + train_step, no per-step sync", lean[:2]),
        (f"(a\") the same, fingerprints on the {'host' if here else 'device'}", other[:2]),
        ("(b)  model only (precomputed fingerprints)", model_step),
        ("(c)  input pipeline: training_dataset", ms_per_step(pipeline, args.warmup, args.steps)),
        ("(c2) graph_fingerprints (MFCC), one batch", ms_per_step(fingerprinter, args.warmup, args.steps)),
    ]
    if hasattr(processor, "training_batches"):
        figures.insert(5, ("(c1) numpy generator: batch + augment", ms_per_step(generator, args.warmup, args.steps)))
    print(f"{'':46s} {'wall ms/step':>12s} {'batches/s':>10s} {'CPU ms/step':>12s}")
    for name, (wall, cpu) in figures:
        print(f"{name:46s} {wall:12.1f} {1000 / wall:10.1f} {cpu:12.1f}")
    print(f"(a)/(b): end to end {end_to_end[0] / model_step[0]:.2f}x the model-only step; waiting for "
          f"input: {100 * lean[2]:.0f}% of (a'), {100 * other[2]:.0f}% of (a\")")
    print(f"after: {load()}")
    shutil.rmtree(scratch, ignore_errors=True)
    if args.arm_rounds > 0:
        compare_with_arm(args, data_dir)


def compare_with_arm(args: argparse.Namespace, data_dir: Path) -> None:
    """Arm's train.py and ours as whole processes, alternating, on the same WAV clips."""
    if args.model not in ARM_MODELS:
        print(f"Arm's train.py has no {args.model}: whole-process comparison skipped")
        return
    if not os.path.isdir(args.arm_dir):
        print(f"--arm_dir {args.arm_dir} is absent: Arm's side skipped")
        return
    if len(args.process_steps) != 2 or args.process_steps[0] >= args.process_steps[1]:
        raise UsageError(f"--process_steps takes SHORT,LONG with SHORT < LONG, got {args.process_steps}")
    data = whole_process.wav_copy(str(data_dir), args.wav_clips)
    print(f"whole processes on {data}: {', '.join(str(n) for n in args.process_steps)} steps, "
          f"{args.arm_rounds} rounds; {load()}", flush=True)
    ours_ms, arm_ms = whole_process.compare(MODELS[args.model], data, args.arm_rounds,
                                            *args.process_steps, Path(args.arm_dir))
    print(whole_process.summary(ours_ms, arm_ms))
    print(f"after: {load()}")


if __name__ == "__main__":
    cli.run(main, make_parser())
