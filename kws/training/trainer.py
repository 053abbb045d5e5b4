"""Training: the learning-rate schedule and one short, resumable training loop.

The learning rate is piecewise constant: --how_many_training_steps 15000,3000
with --learning_rate 0.001,0.0001 trains 15,000 steps at 0.001, then 3,000 at
0.0001. Every --eval_step_interval steps the batch-norm statistics are
recalibrated, the model is evaluated on the validation partition, the
training state (weights, optimizer, step) is saved under --train_dir/last,
and the best model so far is kept as --train_dir/best/<architecture>_<accuracy>.ckpt.
Started again with the same --train_dir, a run continues from its last saved
step and sees exactly the batches an uninterrupted run would have.

The loop runs under a tf.distribute strategy (kws/training/distribute.py; the default
strategy is one device): model and optimizer are built in strategy.scope(),
each step is strategy.run on every replica with the loss averaged over the
global batch (tf.nn.compute_average_loss), and the loss and accuracy are
reduced over the replicas. Only the chief writes files and prints.
"""
import argparse
import dataclasses
import os
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from kws import cli, evaluation, features, tf_env
from kws.data import pipeline, sources, speech_commands
from kws.data.dataset import DataSettings
from kws.training import checkpoints, distillation, distribute

tf = tf_env.import_tensorflow()

RECALIBRATION_BATCHES = 10


def add_training_flags(parser: argparse.ArgumentParser,
                       steps: str = "15000,3000", learning_rate: str = "0.001,0.0001") -> None:
    """Flags of the training schedule and its outputs (train.py and optimize.py)."""
    group = parser.add_argument_group("training")
    group.add_argument("--how_many_training_steps", type=cli.comma_list(cli.positive_int),
                       default=steps, help="How many training steps to run in each phase.")
    group.add_argument("--learning_rate", type=cli.comma_list(float), default=learning_rate,
                       help="The learning rate of each phase of --how_many_training_steps.")
    group.add_argument("--batch_size", type=cli.positive_int, default=100,
                       help="How many items to train with at once.")
    group.add_argument("--eval_step_interval", type=cli.positive_int, default=400,
                       help="How often to evaluate the training results and save a checkpoint.")
    group.add_argument("--train_dir", default="/tmp/speech_commands_train",
                       help="Directory to write checkpoints to.")
    group.add_argument("--summaries_dir", default="/tmp/retrain_logs",
                       help="Where to save summary logs for TensorBoard ('' for none).")
    group.add_argument("--start_checkpoint", default="",
                       help="If specified, restore these weights before any training.")


def check_schedule(steps: Sequence[int], rates: Sequence[float]) -> None:
    """The two schedule lists (--how_many_training_steps, --learning_rate) must be non-empty
    and of equal length, the rates positive."""
    if not steps or not rates or len(steps) != len(rates):
        raise cli.UsageError(
            f"--how_many_training_steps and --learning_rate must list the same number of phases, "
            f"got {len(steps)} and {len(rates)}")
    if any(rate <= 0 for rate in rates):
        raise cli.UsageError(f"--learning_rate values must be positive, got {rates}")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """The flags of add_training_flags (the schedule and where a run writes), and the
    --model_architecture that names its best checkpoints."""

    how_many_training_steps: Tuple[int, ...]
    learning_rate: Tuple[float, ...]
    batch_size: int
    eval_step_interval: int
    train_dir: str
    model_architecture: str
    summaries_dir: str = ""  # none
    start_checkpoint: str = ""

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "TrainingSettings":
        """The training flags, the schedule checked."""
        check_schedule(args.how_many_training_steps, args.learning_rate)
        return cls(tuple(args.how_many_training_steps), tuple(args.learning_rate),
                   args.batch_size, args.eval_step_interval, args.train_dir,
                   args.model_architecture, args.summaries_dir, args.start_checkpoint)


def learning_rate_schedule(steps: Sequence[int], rates: Sequence[float]
                           ) -> tf.keras.optimizers.schedules.LearningRateSchedule:
    """Piecewise-constant schedule: rates[i] for steps[i] steps; works for one phase too."""
    boundaries = list(np.cumsum(steps)[:-1])
    if not boundaries:
        return tf.keras.optimizers.schedules.PiecewiseConstantDecay([steps[0]], [rates[0], rates[0]])
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(b) for b in boundaries], [float(r) for r in rates])


def recalibrate_batch_norm(model: tf.keras.Model, batches: Iterable[tf.Tensor]) -> None:
    """Sets every BatchNormalization's moving statistics to the average over batches.

    Moving averages lag behind fast-changing weights, so after a short run they
    do not describe the data and inference-mode outputs collapse to one class.
    Averaging the current weights' batch statistics over a few training batches
    ("precise BN") makes inference mode match training mode.
    """
    layers = [layer for layer in _all_layers(model)
              if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for count, batch in enumerate(batches):
        for layer in layers:
            layer.momentum = count / (count + 1.0)
        model(batch, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def _all_layers(model: tf.keras.Model) -> List[tf.keras.layers.Layer]:
    """Every layer inside model: nested models' and the layers that layers hold (the batch
    norm of bc_resnet's SubSpectralNorm)."""
    return [module for module in model.submodules if isinstance(module, tf.keras.layers.Layer)]


class Trainer:
    """The training loop with its state, resumable from --train_dir/last."""

    def __init__(self, model: tf.keras.Model, processor: sources.TrainingData,
                 settings: TrainingSettings, strategy: Optional[tf.distribute.Strategy] = None,
                 teachers: Sequence[distillation.Teacher] = (),
                 soft_targets: Optional[distillation.Distillation] = None, on_device: bool = False):
        """model must have been built in strategy.scope(); processor is the training data
        (sources.TrainingData); with teachers, the loss blends the labels with their outputs;
        on_device: the training step computes the fingerprints (distribute.fingerprints_on_device)."""
        self.model = model
        self.teachers = list(teachers)
        self.soft_targets = soft_targets
        self.processor = processor
        self.settings = settings
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = distribute.is_chief(self.strategy)
        self.on_device = on_device
        self.total_steps = int(sum(settings.how_many_training_steps))
        self.schedule = learning_rate_schedule(settings.how_many_training_steps,
                                               settings.learning_rate)
        with self.strategy.scope():
            self.optimizer = tf.keras.optimizers.Adam(learning_rate=self.schedule)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.state = tf.train.Checkpoint(model=model, optimizer=self.optimizer, step=self.step,
                                         best_accuracy=self.best_accuracy)
        self.last_dir = os.path.join(settings.train_dir, "last")
        self.history = {"train": [], "validation": []}  # this process's steps, for plots
        self.writers = None
        if settings.summaries_dir and self.chief:
            self.writers = {name: tf.summary.create_file_writer(os.path.join(settings.summaries_dir, name))
                            for name in ("train", "validation")}

    def restore(self) -> None:
        """Continues a run from --train_dir/last, or starts from --start_checkpoint."""
        latest = checkpoints.restore_training_state(self.state, self.settings.train_dir, self.say)
        if latest:
            self.say(f"Resuming from {latest} at step {int(self.step.numpy())}")
            if self.settings.start_checkpoint:
                self.say("(--start_checkpoint ignored: the run in --train_dir continues)")
        elif self.settings.start_checkpoint:
            prefix = checkpoints.load_weights(self.model, self.settings.start_checkpoint)
            self.say(f"Starting from the weights of {prefix}")

    def say(self, line: str) -> None:
        """Prints line on the chief (the other workers keep quiet)."""
        if self.chief:
            print(line, flush=True)

    def model_input(self, fingerprints: tf.Tensor) -> tf.Tensor:
        """The training fingerprints as the model is fed them (as they are, here)."""
        return fingerprints

    def fingerprints(self, x) -> tf.Tensor:
        """The fingerprints of a training batch's x (computed here when --fingerprints_on device)."""
        return pipeline.fingerprints_of(x, self.processor.model_settings)

    def replica_step(self, x, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """One replica's part of a step: its loss share and its count of correct answers."""
        with tf.GradientTape() as tape:
            probabilities = tf.cast(self.model(self.model_input(self.fingerprints(x)), training=True),
                                    tf.float32)
            if self.teachers:
                targets = distillation.ensemble_probabilities(self.teachers, pipeline.teacher_fingerprints(
                    x, self.teacher_settings()))
                losses = distillation.losses(labels, probabilities, targets, self.soft_targets)
            else:
                losses = tf.keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.settings.batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(probabilities, axis=1, output_type=tf.int32), labels), tf.float32))
        return loss, correct

    def teacher_settings(self) -> List[features.ModelSettings]:
        """The fingerprint settings of each teacher, in order."""
        return [teacher.settings for teacher in self.teachers]

    @tf.function
    def train_step(self, x, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """One step on every replica: (loss, accuracy) of the global batch."""
        loss, correct = self.strategy.run(self.replica_step, args=(x, labels))
        total = tf.distribute.ReduceOp.SUM
        return (self.strategy.reduce(total, loss, axis=None),
                self.strategy.reduce(total, correct, axis=None) / self.settings.batch_size)

    def validate(self) -> float:
        """Recalibrates batch norm, measures validation accuracy, saves the state and the best model.
        Every worker runs it (evaluation and saves exchange values); only the chief writes."""
        step = int(self.step.numpy())
        calibration = self.processor.training_dataset(self.settings.batch_size, step, self.on_device)
        recalibrate_batch_norm(self.model, (self.model_input(self.fingerprints(x))
                                            for x, _ in calibration.take(RECALIBRATION_BATCHES)))
        fingerprints, labels = self.processor.fingerprints("validation")
        if not len(labels):  # no model selection: the latest model is the best one
            self.save_best(0.0)
            self.save_state(step)
            return 0.0
        accuracy = evaluation.evaluate(self.model, fingerprints, labels,
                                       len(self.processor.words_list)).accuracy
        self.say(f"Step {step}: validation accuracy {accuracy:.4f} (N={len(labels)})")
        self.history["validation"].append((step, accuracy))
        if self.writers:
            with self.writers["validation"].as_default():
                tf.summary.scalar("accuracy", accuracy, step=step)
        if accuracy > self.best_accuracy.numpy():
            self.save_best(accuracy)
        self.save_state(step)
        return accuracy

    def save_state(self, step: int) -> None:
        """The training state under --train_dir/last (on the chief; elsewhere into scratch)."""
        with distribute.write_dir(self.strategy, self.last_dir) as folder:
            tf.train.CheckpointManager(self.state, folder, max_to_keep=2).save(checkpoint_number=step)

    def save_best(self, accuracy: float) -> None:
        """Keeps the new best model under best/, replacing the previous best."""
        best_dir = os.path.join(self.settings.train_dir, "best")
        previous = tf.train.latest_checkpoint(best_dir)
        name = os.path.basename(checkpoints.best_checkpoint_prefix(
            self.settings.train_dir, self.settings.model_architecture, accuracy))
        with distribute.write_dir(self.strategy, best_dir) as folder:
            prefix = os.path.join(folder, name)
            checkpoints.save_weights_atomically(self.model, prefix)
        self.best_accuracy.assign(accuracy)
        if self.chief and previous and previous != prefix:
            checkpoints.remove_checkpoint(previous)
        self.say(f"Saved best model to {prefix}")

    def run(self) -> None:
        """Trains from the current step to the end of the schedule."""
        start = int(self.step.numpy())
        interval = self.settings.eval_step_interval
        batches = iter(distribute.training_batches(self.strategy, self.processor, self.settings.batch_size,
                                                   start, self.on_device, self.teacher_settings()))
        losses, accuracies = [], []
        tick = time.perf_counter()
        for _ in range(max(0, self.total_steps - start)):
            loss, accuracy = self.train_step(*next(batches))
            self.step.assign_add(1)
            step = int(self.step.numpy())
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            if step % 100 == 0 or step % interval == 0 or step == self.total_steps:
                elapsed = (time.perf_counter() - tick) * 1000 / len(losses)
                rate = float(self.schedule(step - 1))
                self.say(f"Step {step}/{self.total_steps}: rate {rate:g}, accuracy {np.mean(accuracies):.4f}, "
                      f"cross entropy {np.mean(losses):.4f} ({elapsed:.1f} ms/step)")
                self.history["train"].append((step, float(np.mean(accuracies)), float(np.mean(losses))))
                if self.writers:
                    with self.writers["train"].as_default():
                        tf.summary.scalar("cross_entropy", np.mean(losses), step=step)
                        tf.summary.scalar("accuracy", np.mean(accuracies), step=step)
                        tf.summary.scalar("learning_rate", rate, step=step)
                losses, accuracies = [], []
                tick = time.perf_counter()
            if step % interval == 0 or step == self.total_steps:
                self.validate()
                tick = time.perf_counter()
        if int(self.step.numpy()) == self.total_steps and self.best_accuracy.numpy() < 0:
            self.validate()

    def test(self, data: DataSettings) -> Tuple[str, Dict[str, evaluation.Evaluation]]:
        """Loads the best model and evaluates it on the testing partition, and on the
        --test_dir folder of data when given: (its checkpoint, set name -> result)."""
        best = tf.train.latest_checkpoint(os.path.join(self.settings.train_dir, "best"))
        if best:
            checkpoints.load_weights(self.model, best)
        source = speech_commands.DataSource(data, self.processor.model_settings, self.processor)
        label_count = len(self.processor.words_list)
        sets = evaluation.evaluation_sets(source, ["testing"])
        return best, {name: evaluation.evaluate(self.model, fingerprints, labels, label_count)
                      for name, (fingerprints, labels) in sets.items()}
