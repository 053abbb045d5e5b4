"""Optimization with TensorFlow Model Optimization: runs a technique's stages on a checkpoint.

optimize takes the flags as settings.Settings and the data source, both built
at the script's door. The technique's stages (stages.TECHNIQUES) run in order.
Before any training, the plan of every stage says which layers it wraps and
which it leaves alone, and why; a technique that would leave most of a model's
kernel weights untouched is refused. Each stage then fine-tunes a freshly built
model holding the previous stage's weights (StageTrainer, a resumable
training.Trainer) in a folder named by the stages so far, so that techniques
that begin with the same stages share them, and strips its wrappers again.
The result is saved as a plain checkpoint (with, after quantization-aware
training, the int8 .tflite converted from the quantization-aware model);
accuracy_lines compares it with the starting checkpoint.
"""
import argparse
import dataclasses
import os
import re
from typing import List, Optional, Tuple

import numpy as np

from kws import cli, evaluation, features, tf_env, vocabulary
from kws.data import augmentation, speech_commands
from kws.export import calibration
from kws.models import registry
from kws.optimization import tfmot_adapter
from kws.optimization.report import KernelStats, kernel_size, kernel_stats, kernels
from kws.optimization.settings import Output, Settings
from kws.optimization.stages import CENTROID_INITS, TECHNIQUES, Plan, Stage
from kws.runtime.tflite_model import TFLiteModel
from kws.training import checkpoints, distribute
from kws.training import trainer as training

tf = tf_env.import_tensorflow()

# A technique is refused when the layers it can wrap hold less than this share of the kernel weights.
MIN_COVERAGE = 0.5


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of optimize.py: data, features, augmentation, model, training, distribution,
    the starting checkpoint, the technique and the calibration of quantization-aware training."""
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    augmentation.add_augmentation_flags(parser)
    registry.add_model_flags(parser)
    training.add_training_flags(parser, steps="2000,2000", learning_rate="0.0001,0.00002")
    parser.set_defaults(train_dir="/tmp/speech_commands_optimize",
                        summaries_dir="/tmp/optimize_logs")
    distribute.add_distribution_flags(parser, training_only=False)
    group = parser.add_argument_group("optimization")
    checkpoints.add_checkpoint_flag(group, "The trained float checkpoint to start from")
    add_optimization_flags(group)
    calibration.add_calibration_flags(parser.add_argument_group(
        "calibration of quantization-aware training (the clips convert.py calibrates with)"))


def add_optimization_flags(group: argparse._ArgumentGroup) -> None:
    """The technique and its parameters (optimize.py adds --checkpoint and the calibration flags)."""
    group.add_argument("--technique", choices=TECHNIQUES, default="cluster",
                       help="What to do; combinations run their stages in the order of the name.")
    group.add_argument("--number_of_clusters", type=cli.positive_int, default=32,
                       help="Distinct values per kernel after clustering.")
    group.add_argument("--cluster_centroids_init", choices=CENTROID_INITS, default="kmeans_plus_plus",
                       help="How the cluster centroids are initialized.")
    group.add_argument("--initial_sparsity", type=cli.fraction, default=0.5,
                       help="Sparsity of the first pruning step.")
    group.add_argument("--final_sparsity", type=cli.fraction, default=0.8,
                       help="Sparsity reached at --pruning_end_step and kept to the end.")
    group.add_argument("--pruning_begin_step", type=int, default=0,
                       help="Step of the pruning stage at which pruning starts.")
    group.add_argument("--pruning_end_step", type=int, default=None,
                       help="Step at which --final_sparsity is reached; default: two thirds of the "
                            "stage's steps, rounded down to a multiple of --pruning_frequency.")
    group.add_argument("--pruning_frequency", type=cli.positive_int, default=100,
                       help="Steps between two updates of the pruning masks.")


def describe_plan(model: tf.keras.Model, stage: Stage, plan: Plan) -> str:
    """The plan of one stage in words; raises UsageError when it would leave most weights alone."""
    lines = []
    wrapped_size = total_size = 0
    for layer in model.layers:
        action, reason = plan[layer.name]
        size = kernel_size(layer)
        total_size += size
        if action == "wrap":
            wrapped_size += size
        if action == "skip" or (action == "wrap" and not kernels(layer) and not reason):
            continue
        shapes = " ".join("x".join(map(str, weight.shape)) for weight in kernels(layer))
        verb = "wraps" if action == "wrap" else "LEAVES"
        lines.append(f"  {verb:6} {layer.name} ({type(layer).__name__}{' ' + shapes if shapes else ''})"
                     f"{': ' + reason if reason else ''}")
    coverage = wrapped_size / total_size if total_size else 0.0
    text = f"{stage.title}: wraps {wrapped_size:,} of {total_size:,} kernel weights ({coverage:.0%})\n"
    text += "\n".join(lines)
    if coverage < MIN_COVERAGE:
        left = "; ".join(f"{name}: {reason}" for name, (action, reason) in plan.items() if action == "leave")
        raise cli.UsageError(f"{stage.title} cannot optimize this {model.name} model: it could wrap only "
                             f"{coverage:.0%} of its kernel weights ({left})")
    return text


class StageTrainer(training.Trainer):
    """training.Trainer for a wrapped model.

    It feeds tfmot's pruning wrappers the training step (what the
    UpdatePruningStep callback does in model.fit), clips the input below at
    input_floor (QAT, as convert.py calibrates), and keeps as best model only
    models trained up to first_selectable_step or beyond (full sparsity reached).
    """

    def __init__(self, model: tf.keras.Model, processor: speech_commands.AudioProcessor,
                 settings: Settings, output: Output, first_selectable_step: int,
                 input_floor: Optional[float] = None):
        super().__init__(model, processor, training_settings(settings, output))
        self.first_selectable_step = first_selectable_step
        self.input_floor = input_floor
        self.pruning_steps = tfmot_adapter.pruning_steps(model)

    def model_input(self, fingerprints: tf.Tensor) -> tf.Tensor:
        if self.input_floor is None:
            return fingerprints
        return tf.maximum(fingerprints, self.input_floor)

    def train_step(self, fingerprints: tf.Tensor, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        for pruning_step in self.pruning_steps:
            pruning_step.assign(self.step)
        return super().train_step(fingerprints, labels)

    def save_best(self, accuracy: float) -> None:
        if int(self.step.numpy()) >= self.first_selectable_step:
            super().save_best(accuracy)


def training_settings(settings: Settings, output: Output) -> training.TrainingSettings:
    """What the Trainer runs a stage with: the fine-tuning schedule, the stage's folders and
    no --start_checkpoint."""
    tuning = settings.fine_tuning
    return training.TrainingSettings(tuning.steps, tuning.learning_rates, tuning.batch_size,
                                     tuning.eval_step_interval, output.train_dir,
                                     settings.model.architecture, output.summaries_dir)


def stage_output(settings: Settings, index: int) -> Output:
    """The folders of stage index (1-based), under the path of stage folders so far
    (prune/cluster/qat), so that techniques that begin with the same stages share them."""
    folder = os.path.join(*(stage.folder for stage in settings.technique.stages[:index]))
    return settings.output.of_stage(folder)


def run_stage(index: int, stage: Stage, weights: List[np.ndarray], data: speech_commands.DataSource,
              settings: Settings) -> Tuple[tf.keras.Model, tf.keras.Model]:
    """Wraps, fine-tunes (or resumes) and strips one stage; returns (plain model, wrapped best model)."""
    technique = settings.technique
    base = settings.model.build()
    base.set_weights(weights)
    wrapped = stage.wrap(base, stage.plan(base, technique), technique)
    output = stage_output(settings, index)
    print(f"\nStage {index} of {technique.name}: {stage.title}, state in {output.train_dir}")
    fingerprints, floor = stage.starting_input(technique, data)
    trainer = StageTrainer(wrapped, data.processor, settings, output,
                           stage.first_selectable_step(technique), floor)
    trainer.restore()
    if fingerprints is not None and int(trainer.step.numpy()) == 0:
        stage.initialize(wrapped, fingerprints)
    trainer.run()
    best = tf.train.latest_checkpoint(os.path.join(output.train_dir, "best"))
    checkpoints.load_weights(wrapped, best)
    print(f"Stage {index}: best model {best}")
    plain = settings.model.build()
    stage.copy_weights(wrapped, base, plain)
    return plain, wrapped


@dataclasses.dataclass
class Outcome:
    """What a run of a technique leaves: the saved result and what the report needs."""

    prefix: str  # the stripped result checkpoint
    accuracy: float  # its validation accuracy
    start: tf.keras.Model
    result: tf.keras.Model
    stats: List[KernelStats]  # of result's kernels, named by start's layers
    checks: List[str]  # a line of each stage that can tell whether the result holds what it promised
    data: speech_commands.DataSource
    int8_path: Optional[str] = None  # the int8 model the last stage converted itself (QAT)
    int8_content: Optional[bytes] = None


def save_result(model: tf.keras.Model, train_dir: str, technique: str, accuracy: float) -> str:
    """Saves <train_dir>/<technique>_<validation accuracy>.ckpt, replacing an earlier result."""
    earlier = re.compile(re.escape(technique) + r"_\d\.\d{4}\.(ckpt\.index|ckpt\.data-.*|tflite)")
    for name in os.listdir(train_dir) if os.path.isdir(train_dir) else []:
        if earlier.fullmatch(name):
            os.remove(os.path.join(train_dir, name))
    prefix = os.path.join(train_dir, f"{technique}_{accuracy:.4f}.ckpt")
    checkpoints.save_weights_atomically(model, prefix)
    return prefix


def optimize(settings: Settings, data: speech_commands.DataSource) -> Outcome:
    """Prints the plans, runs the technique's stages on data and saves the result (with the
    int8 .tflite of a quantization-aware model beside it)."""
    technique = settings.technique
    tf.keras.utils.set_random_seed(settings.fine_tuning.seed)
    start = settings.model.build()
    print(f"Starting from {checkpoints.load_weights(start, settings.checkpoint)}")
    stages = technique.stages
    for index, stage in enumerate(stages, 1):
        print(f"Plan of stage {index}, " + describe_plan(start, stage, stage.plan(start, technique)))
    processor = data.processor  # the data set is loaded now, before any stage
    weights = start.get_weights()
    result = wrapped = start
    for index, stage in enumerate(stages, 1):
        result, wrapped = run_stage(index, stage, weights, data, settings)
        weights = result.get_weights()
    fingerprints, labels = processor.fingerprints("validation")
    accuracy = evaluation.evaluate(result, fingerprints, labels, len(processor.words_list)).accuracy
    prefix = save_result(result, settings.output.train_dir, technique.name, accuracy)
    stats = kernel_stats(result, [layer.name for layer in start.layers])
    checks = [line for line in (stage.result_check(stats, start, technique) for stage in stages) if line]
    outcome = Outcome(prefix, accuracy, start, result, stats, checks, data)
    outcome.int8_content = stages[-1].int8_model(wrapped)
    if outcome.int8_content is not None:
        outcome.int8_path = prefix[:-len(".ckpt")] + ".tflite"
        cli.write_atomically(outcome.int8_path, outcome.int8_content)
    return outcome


def accuracy_lines(outcome: Outcome, technique: str) -> List[str]:
    """Float accuracy of the start and the result on the --test_dir folder and the testing
    partition, and the int8 accuracy of the quantization-aware model's own .tflite."""
    label_count = len(outcome.data.processor.words_list)
    int8 = TFLiteModel(content=outcome.int8_content) if outcome.int8_content is not None else None
    lines = []
    for name, (fingerprints, labels) in evaluation.evaluation_sets(outcome.data, ["testing"]).items():
        before = evaluation.evaluate(outcome.start, fingerprints, labels, label_count).accuracy
        after = evaluation.evaluate(outcome.result, fingerprints, labels, label_count).accuracy
        line = f"{name}: accuracy {before:.4f} (start, float) -> {after:.4f} ({technique}, float)"
        if int8 is not None:
            line += (f", {evaluation.evaluate(int8, fingerprints, labels, label_count).accuracy:.4f} "
                     f"(quantization-aware, int8)")
        lines.append(f"{line} (N={len(labels)})")
    return lines
