"""Where training runs: the tf.distribute strategy, the chief's writes, precision, fingerprints.

--distribution_strategy picks TensorFlow's own engine:
  none          one device (the default strategy); the default unless several GPUs are visible
  mirrored      MirroredStrategy over this machine's GPUs (its logical CPUs when it has none;
                one device is one replica); the default when more than one GPU is visible
  multi_worker  MultiWorkerMirroredStrategy over the machines of the TF_CONFIG variable
The global batch is --batch_size, split evenly over the replicas; learning rates stay as given.
Every worker runs the same loop (training steps, validation and saves all exchange values
between workers); only the chief writes --train_dir, --summaries_dir and the report. The others
save into a temporary folder that is deleted at once (TensorFlow's documented pattern) and
resume, like the chief, from the chief's --train_dir/last (a folder all workers can read).
"""
import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Iterator, Optional, Sequence

from kws import cli, tf_env
from kws.cli import UsageError
from kws.data import sources
from kws.features import ModelSettings

tf = tf_env.import_tensorflow()

STRATEGIES = ("none", "mirrored", "multi_worker")
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # flag -> Keras policy
FINGERPRINT_PLACES = ("auto", "host", "device")


def add_distribution_flags(parser: argparse.ArgumentParser, training_only: bool = True) -> None:
    """--distribution_strategy; with training_only (train.py) also --mixed_precision and
    --fingerprints_on."""
    group = parser.add_argument_group("devices")
    group.add_argument("--distribution_strategy", choices=STRATEGIES, default=None,
                       help="tf.distribute strategy: none (one device), mirrored (every GPU of this "
                            "machine), multi_worker (the cluster of the TF_CONFIG variable). Default: "
                            "mirrored when more than one GPU is visible, else none.")
    if not training_only:
        return
    group.add_argument("--mixed_precision", choices=PRECISIONS, default="float32",
                       help="Keras mixed precision of the training step: bfloat16 computes in "
                            "bfloat16 with float32 weights (checkpoints stay float32).")
    group.add_argument("--fingerprints_on", choices=FINGERPRINT_PLACES, default="auto",
                       help="Where training fingerprints are computed: host (in the tf.data "
                            "pipeline), device (inside the training step, on the accelerator); "
                            "auto: device when a GPU is visible, else host.")


@dataclasses.dataclass(frozen=True)
class DeviceSettings:
    """The flags of add_distribution_flags; a script without the training-only ones gets
    float32 and fingerprints on the host."""

    distribution_strategy: Optional[str] = None  # None: the default for the visible devices
    mixed_precision: str = "float32"  # a key of PRECISIONS
    fingerprints_on: str = "host"  # one of FINGERPRINT_PLACES

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "DeviceSettings":
        return cls(args.distribution_strategy, getattr(args, "mixed_precision", "float32"),
                   getattr(args, "fingerprints_on", "host"))


def strategy_name(requested: Optional[str]) -> str:
    """requested (--distribution_strategy), or its default for the visible devices."""
    if requested:
        return requested
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"


def check_tf_config() -> dict:
    """The TF_CONFIG variable of a multi-worker run, parsed; UsageError when it is unusable."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise UsageError("--distribution_strategy multi_worker needs the TF_CONFIG variable "
                         '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}})')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        addresses = cluster[task["type"]][int(task["index"])]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise UsageError(f"--distribution_strategy multi_worker: TF_CONFIG is not a cluster with this "
                         f"task in it ({error.__class__.__name__}: {cli.first_line(error)})")
    if task["type"] not in ("chief", "worker") or not addresses:
        raise UsageError(f"--distribution_strategy multi_worker: TF_CONFIG task type "
                         f"{task['type']!r} is not a chief or a worker")
    return config


def make_strategy(requested: Optional[str]) -> tf.distribute.Strategy:
    """The tf.distribute strategy of requested (--distribution_strategy; None: the default
    for the visible devices), made before any model is built."""
    name = strategy_name(requested)
    if name == "multi_worker":
        check_tf_config()
        try:
            with cli.quiet_stderr():
                return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise UsageError(f"--distribution_strategy multi_worker: {cli.first_line(error)} "
                             f"(TF_CONFIG must be set when the process starts)")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line: the strategy, its replicas and this process's role."""
    resolver = strategy.cluster_resolver
    role = ""
    if resolver is not None and resolver.task_type:
        role = f", this is {resolver.task_type} {resolver.task_id}" + (" (chief)" if is_chief(strategy) else "")
    name = type(strategy).__name__.replace("_DefaultDistributionStrategy", "none (one device)")
    return f"Distribution: {name}, {strategy.num_replicas_in_sync} replica(s){role}"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and the report."""
    return strategy.extended.should_checkpoint


@contextlib.contextmanager
def write_dir(strategy: tf.distribute.Strategy, folder: str) -> Iterator[str]:
    """folder on the chief; on another worker a temporary folder, deleted when the block ends."""
    if is_chief(strategy):
        yield folder
        return
    scratch = tempfile.mkdtemp(prefix="kws_worker_")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """--batch_size must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UsageError(f"--batch_size {batch_size} does not split evenly over the {replicas} replicas")


def set_precision(precision: str) -> None:
    """Sets the Keras policy of precision (--mixed_precision), for the models built after it."""
    tf.keras.mixed_precision.set_global_policy(PRECISIONS[precision])


def fingerprints_on_device(place: str) -> bool:
    """Whether the training step computes the fingerprints itself (--fingerprints_on place)."""
    if place == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return place == "device"


def training_batches(strategy: tf.distribute.Strategy, data: sources.TrainingData,
                     batch_size: int, start_step: int, on_device: bool,
                     teachers: Sequence[ModelSettings] = ()) -> tf.distribute.DistributedDataset:
    """The training batches of data spread over the replicas, from start_step on.

    Sharded data (sources.ShardedSource: shards.ShardedData) is read by each worker from its own shards, in batches
    of one replica's share; clips in memory (speech_commands.AudioProcessor) make the global batch
    of each step on every worker, which keeps its replicas' part of it (auto-shard by DATA).
    With teachers (their fingerprint settings), x carries their fingerprints too
    (pipeline.teacher_fingerprints).
    """
    check_batch_size(strategy, batch_size)
    if isinstance(data, sources.ShardedSource):
        return strategy.distribute_datasets_from_function(
            lambda context: data.worker_dataset(context, batch_size, start_step, on_device, teachers))
    dataset = data.training_dataset(batch_size, start_step, on_device, teachers)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
