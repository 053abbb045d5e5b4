"""Optimizes a trained model with TensorFlow Model Optimization: clustering, pruning, QAT.

    python optimize.py --model_architecture dnn --model_size_info 128 128 128 --checkpoint <ckpt>

--technique picks what is done (default cluster, as in Arm's optimize.py):

  cluster            weight clustering: --number_of_clusters values per kernel
  prune              magnitude pruning, polynomial decay from --initial_sparsity to --final_sparsity
  prune_2by4         structured 2:4 sparsity (two zeros in every four input-channel weights)
  qat                quantization-aware training
  prune_cluster      pruning, then sparsity-preserving clustering
  prune_qat          pruning, then pruning-preserving QAT (PQAT)
  cluster_qat        clustering, then cluster-preserving QAT (CQAT)
  prune_cluster_qat  pruning, clustering, then sparsity- and cluster-preserving QAT (PCQAT)

Each stage wraps the layers it can in a freshly built model holding the previous
stage's weights, fine-tunes it with the training flags on --data_dir (a short
schedule by default) and strips the wrappers again. It keeps its state as
train.py does, in a folder named by the stages so far (--train_dir/prune,
--train_dir/prune/cluster, ...): a restarted run continues where it stopped,
and a technique reuses the finished stages it begins with (prune_cluster_qat
after prune_cluster trains only its QAT stage). Before any training, the plan
says which layers each stage wraps and which it leaves alone, and why (tfmot
neither prunes nor clusters depthwise kernels, has no QAT for recurrent
layers, and knows no custom recurrent cell); a technique that would leave
most of a model's kernel weights untouched is refused.

The result, --train_dir/<technique>_<validation accuracy>.ckpt, is a plain
checkpoint: test.py and convert.py load it with the same architecture flags.
Its test accuracy is printed next to the starting checkpoint's, with the
sparsity and the number of distinct values of every kernel (for all of it,
and the most in one output channel: tfmot's cluster-preserving QAT gives a
convolution one set of centroids per output channel when every channel uses
about as many clusters, which keeps the count per channel, as per-channel
int8 quantization does anyway).

Quantization-aware training starts from the ranges post-training quantization
would measure: its activation ranges are set by one pass over the clips
convert.py calibrates with (the --representative_samples and
--input_clip_percentile flags are convert.py's), and its input is clipped
where convert.py clips it. After it, the stripped checkpoint holds the trained
float weights (sparsity and clusters kept), which convert.py quantizes again,
measuring activation ranges anew; the model learned on clipped input, so use
it through convert.py (run with the same data flags), not as a float model.
That is close to what QAT trained but not the same: tfmot's 8-bit QAT clips
activations to the ranges it learns and does not fold batch norm into the
weights it quantizes. So optimize.py also writes
<technique>_<validation accuracy>.tflite, the int8 model converted from the
quantization-aware model itself, and prints its accuracy. BENCHMARKS.md
compares both with post-training quantization of the starting checkpoint on
the same clips.
"""
import argparse
import dataclasses
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple
from unittest import mock

import numpy as np

import cli
import checkpoints
import convert
import input_data
import models
import test_tflite
import train

import tensorflow as tf  # noqa: E402  (after cli, which selects tf-keras)
import tensorflow_model_optimization as tfmot  # noqa: E402
# Registries and the pruning wrapper class are not in tfmot's public API; they answer
# "which layers can this technique wrap" without trying (a failed wrap spoils the model).
from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (  # noqa: E402
    PruneLowMagnitude)

TECHNIQUES: Dict[str, Tuple[str, ...]] = {
    "cluster": ("cluster",),
    "prune": ("prune",),
    "prune_2by4": ("prune_2by4",),
    "qat": ("qat",),
    "prune_cluster": ("prune", "cluster"),
    "prune_qat": ("prune", "qat"),
    "cluster_qat": ("cluster", "qat"),
    "prune_cluster_qat": ("prune", "cluster", "qat"),
}
CENTROID_INITS = {
    "kmeans_plus_plus": tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": tfmot.clustering.keras.CentroidInitialization.LINEAR,
    "density_based": tfmot.clustering.keras.CentroidInitialization.DENSITY_BASED,
    "random": tfmot.clustering.keras.CentroidInitialization.RANDOM,
}
M_BY_N = (2, 4)
# A technique is refused when the layers it can wrap hold less than this share of the kernel weights.
MIN_COVERAGE = 0.5


def add_optimization_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the technique and its parameters."""
    group = parser.add_argument_group("optimization")
    group.add_argument("--checkpoint", required=True,
                       help="The trained float checkpoint to start from: a prefix, its .index file or a folder.")
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
    convert.add_calibration_flags(parser.add_argument_group(
        "calibration of quantization-aware training (the clips convert.py calibrates with)"))


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a technique, with what it must preserve of the stages before it."""

    name: str  # prune, prune_2by4, cluster or qat
    preserve_sparsity: bool = False
    preserve_clusters: bool = False

    @property
    def title(self) -> str:
        if self.name == "cluster" and self.preserve_sparsity:
            return "sparsity-preserving clustering"
        if self.name == "qat":
            kept = " and ".join(kind for kind, kept in (("sparsity", self.preserve_sparsity),
                                                         ("cluster", self.preserve_clusters)) if kept)
            return f"{kept}-preserving QAT" if kept else "quantization-aware training"
        return {"prune": "magnitude pruning", "prune_2by4": "2:4 structured pruning",
                "cluster": "clustering"}[self.name]


def stages_of(technique: str) -> List[Stage]:
    """The stages of a technique; later stages preserve the sparsity and clusters of earlier ones."""
    names = TECHNIQUES[technique]
    stages = []
    for i, name in enumerate(names):
        earlier = names[:i]
        stages.append(Stage(name, preserve_sparsity="prune" in earlier,
                            preserve_clusters="cluster" in earlier))
    return stages


def pruning_window(args: argparse.Namespace) -> Tuple[int, int]:
    """(begin, end) step of the pruning schedule, checked against the stage's steps."""
    total = int(sum(args.how_many_training_steps))
    begin, frequency = args.pruning_begin_step, args.pruning_frequency
    end = args.pruning_end_step
    if end is None:
        end = begin + (2 * (total - begin) // 3) // frequency * frequency
    if begin < 0 or end <= begin or end > total:
        raise cli.UsageError(
            f"pruning must start and end within the {total} steps of --how_many_training_steps "
            f"(0 <= --pruning_begin_step < --pruning_end_step <= {total}), got {begin} and {end}; "
            f"with few steps, lower --pruning_frequency ({frequency})")
    if (end - begin) % frequency:
        raise cli.UsageError(
            f"--pruning_end_step - --pruning_begin_step ({end - begin}) must be a multiple of "
            f"--pruning_frequency ({frequency}): the masks reach --final_sparsity only on a pruning step")
    return begin, end


def check_flags(args: argparse.Namespace) -> None:
    """Raises UsageError for inconsistent flags, before anything is loaded."""
    train.check_schedule(args)
    convert.check_input_clip_percentile(args.input_clip_percentile)
    names = TECHNIQUES[args.technique]
    if "prune" in names:
        pruning_window(args)
        if not args.initial_sparsity <= args.final_sparsity < 1:
            raise cli.UsageError(f"need --initial_sparsity <= --final_sparsity < 1, got "
                                 f"{args.initial_sparsity} and {args.final_sparsity}")
    if "cluster" in names:
        least = 3 if "prune" in names else 2  # sparsity preservation spends a cluster on zero
        if args.number_of_clusters < least:
            raise cli.UsageError(f"--number_of_clusters must be at least {least} for "
                                 f"{args.technique}, got {args.number_of_clusters}")


def kernels(layer: tf.keras.layers.Layer) -> List[tf.Variable]:
    """The weight matrices and filters of a layer (kernel, recurrent_kernel, depthwise_kernel, ...):
    what the techniques act on; biases, batch norm and peephole weights are left as they are."""
    return [weight for weight in layer.weights if "kernel" in weight.name.split("/")[-1]]


def kernel_size(layer: tf.keras.layers.Layer) -> int:
    return sum(weight.shape.num_elements() for weight in kernels(layer))


def _follows_linear_layer(layer: tf.keras.layers.Layer) -> bool:
    """Whether a BatchNormalization directly follows a Conv2D/DepthwiseConv2D/Dense without activation."""
    inbound = layer._inbound_nodes[0].inbound_layers if layer._inbound_nodes else []
    linear_layers = (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D, tf.keras.layers.Dense)
    return isinstance(inbound, linear_layers) and inbound.get_config().get("activation") == "linear"


def qat_supports(layer: tf.keras.layers.Layer) -> bool:
    """Whether tfmot's default 8-bit scheme quantizes this layer (batch norm: only after conv/dense)."""
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        return _follows_linear_layer(layer)
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry().supports(layer)


def _registry_has_weights(registry: type, layer: tf.keras.layers.Layer) -> bool:
    """Whether a tfmot registry that supports layer also acts on its weights (it lists none for some)."""
    return isinstance(layer, tf.keras.layers.RNN) or bool(registry._weight_names(layer))


def plan_layer(stage: Stage, layer: tf.keras.layers.Layer, args: argparse.Namespace
               ) -> Tuple[str, str]:
    """(action, reason) for one layer: 'wrap', 'skip' (nothing to do) or 'leave' (cannot be wrapped).

    QAT wraps every layer it supports, weights or not: activations are quantized everywhere.
    """
    kind = type(layer).__name__
    if isinstance(layer, tf.keras.layers.InputLayer):
        return "skip", ""
    if stage.name == "qat":
        if qat_supports(layer):
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                return "wrap", "stays float during QAT, folded into the preceding layer at conversion"
            return "wrap", ""
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            return "leave", "batch norm not right after a conv/dense layer: nothing to fold it into"
        if isinstance(layer, tf.keras.layers.RNN):
            return "leave", f"tfmot's default 8-bit scheme has no QAT for recurrent layers ({kind})"
        return "leave", f"tfmot's default 8-bit scheme does not support {kind}"
    if not kernels(layer):
        return "skip", ""
    if isinstance(layer, tf.keras.layers.RNN) and not isinstance(
            layer.cell, (tf.keras.layers.LSTMCell, tf.keras.layers.GRUCell, tf.keras.layers.SimpleRNNCell)):
        return "leave", f"custom recurrent cell {type(layer.cell).__name__}: tfmot knows only built-in cells"
    if stage.name in ("prune", "prune_2by4"):
        registry = prune_registry.PruneRegistry
        if not registry.supports(layer) or not _registry_has_weights(registry, layer):
            return "leave", f"tfmot does not prune {kind} kernels"
        if stage.name == "prune_2by4":
            if type(layer) not in (tf.keras.layers.Conv2D, tf.keras.layers.Dense):
                return "leave", f"2:4 sparsity applies to Conv2D and Dense kernels, not {kind}"
            if kernels(layer)[0].shape[-2] < M_BY_N[1]:
                return "leave", (f"{kernels(layer)[0].shape[-2]} input channel(s): no block of "
                                 f"{M_BY_N[1]} to prune")
        return "wrap", ""
    registry = clustering_registry.ClusteringRegistry
    if not registry.supports(layer) or not _registry_has_weights(registry, layer):
        return "leave", f"tfmot does not cluster {kind} kernels"
    smallest = min(_clusterable_count(weight, stage, args) for weight in kernels(layer))
    if smallest < args.number_of_clusters:
        nonzero = " non-zero" if stage.preserve_sparsity else ""
        return "leave", (f"a kernel keeps only {smallest}{nonzero} weights, too few for "
                         f"{args.number_of_clusters} clusters")
    return "wrap", ""


def _clusterable_count(weight: tf.Variable, stage: Stage, args: argparse.Namespace) -> int:
    """How many weights clustering can spread its centroids over: after pruning, the non-zero ones."""
    size = weight.shape.num_elements()
    if not stage.preserve_sparsity:
        return size
    return min(int(np.count_nonzero(weight.numpy())), round(size * (1 - args.final_sparsity)))


def plan_stage(model: tf.keras.Model, stage: Stage, args: argparse.Namespace
               ) -> Dict[str, Tuple[str, str]]:
    """Layer name -> (action, reason) for every layer of model."""
    return {layer.name: plan_layer(stage, layer, args) for layer in model.layers}


def describe_plan(model: tf.keras.Model, stage: Stage, plan: Dict[str, Tuple[str, str]]) -> str:
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


def pruning_schedule(stage: Stage, args: argparse.Namespace) -> tfmot.sparsity.keras.PruningSchedule:
    """Polynomial decay for magnitude pruning; 2:4 pruning sets its masks once, at step 1."""
    if stage.name == "prune_2by4":
        return tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0)
    begin, end = pruning_window(args)
    return tfmot.sparsity.keras.PolynomialDecay(args.initial_sparsity, args.final_sparsity, begin, end,
                                                frequency=args.pruning_frequency)


def quantize_scheme(stage: Stage) -> tfmot.quantization.keras.QuantizeScheme:
    """Default 8-bit QAT, or its collaborative variant that keeps sparsity and/or clusters."""
    if stage.preserve_clusters:
        return tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=stage.preserve_sparsity)
    if stage.preserve_sparsity:
        return tfmot.quantization.keras.collab_opts.Default8BitPrunePreserveQuantizeScheme()
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()


def wrap(base: tf.keras.Model, stage: Stage, plan: Dict[str, Tuple[str, str]],
         args: argparse.Namespace) -> tf.keras.Model:
    """The stage's training model: base's planned layers wrapped, one layer at a time.

    base must be freshly built for this purpose: pruning and clustering wrap its
    own layer objects (and clustering replaces their kernels), so it serves
    afterwards only as the template of layer names.
    """
    def wrap_layer(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        if plan[layer.name][0] != "wrap":
            return layer
        if stage.name == "qat":
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        if stage.name == "cluster":
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=args.number_of_clusters,
                cluster_centroids_init=CENTROID_INITS[args.cluster_centroids_init],
                preserve_sparsity=stage.preserve_sparsity)
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=pruning_schedule(stage, args),
            sparsity_m_by_n=M_BY_N if stage.name == "prune_2by4" else None)

    wrapped = tf.keras.models.clone_model(base, clone_function=wrap_layer)
    if stage.name != "qat":
        return wrapped
    with tfmot.quantization.keras.quantize_scope():
        return tfmot.quantization.keras.quantize_apply(wrapped, scheme=quantize_scheme(stage))


def _unwrapped_name(layer: tf.keras.layers.Layer) -> str:
    wrappers = (tfmot.quantization.keras.QuantizeWrapper, PruneLowMagnitude)
    return layer.layer.name if isinstance(layer, wrappers) else layer.name


def _short_name(weight: tf.Variable, layer_name: str) -> str:
    """'kernel' for 'conv2d/kernel:0' of layer conv2d."""
    return weight.name[len(layer_name) + 1:].split(":")[0]


def _qat_float_weights(layer: tf.keras.layers.Layer, target: tf.keras.layers.Layer) -> List[np.ndarray]:
    """A QAT layer's float weights as inference sees them (PQAT masks applied), in target's order.

    A QuantizeWrapper holds the inner layer's kernel itself (the inner layer's
    weight list loses it), so weights are matched by their name in the layer.
    """
    if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
        return layer.get_weights()
    masks = {weight.ref(): quantizer_vars["sparsity_mask"]
             for weight, _, quantizer_vars in layer._weight_vars if "sparsity_mask" in quantizer_vars}
    values = {_short_name(weight, layer.layer.name): weight * masks.get(weight.ref(), 1.0)
              for weight in layer.weights if weight.name.startswith(layer.layer.name + "/")}
    return [values[_short_name(weight, target.name)].numpy() for weight in target.weights]


def strip(wrapped: tf.keras.Model, base: tf.keras.Model, stage: Stage,
          model_settings: models.ModelSettings, args: argparse.Namespace) -> tf.keras.Model:
    """A freshly built plain model holding the wrapped model's weights as inference uses them."""
    plain = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    if stage.name in ("prune", "prune_2by4"):
        for layer in wrapped.layers:
            if isinstance(layer, PruneLowMagnitude):
                for weight, mask, _ in layer.pruning_vars:
                    weight.assign(weight * mask)  # the last gradient step ran after the last masking
        plain.set_weights(tfmot.sparsity.keras.strip_pruning(wrapped).get_weights())
    elif stage.name == "cluster":
        plain.set_weights(tfmot.clustering.keras.strip_clustering(wrapped).get_weights())
    else:
        by_name = {_unwrapped_name(layer): layer for layer in wrapped.layers}
        for template, target in zip(base.layers, plain.layers):
            if target.weights:
                target.set_weights(_qat_float_weights(by_name[template.name], target))
    return plain


class StageTrainer(train.Trainer):
    """train.Trainer for a wrapped model.

    It feeds tfmot's pruning wrappers the training step (what the
    UpdatePruningStep callback does in model.fit) and keeps as best model
    only models trained up to first_selectable_step or beyond (full sparsity reached).
    """

    def __init__(self, model: tf.keras.Model, processor: input_data.AudioProcessor,
                 args: argparse.Namespace, first_selectable_step: int,
                 input_floor: Optional[float] = None):
        super().__init__(model, processor, args)
        self.first_selectable_step = first_selectable_step
        self.input_floor = input_floor
        self.pruning_steps = [layer.pruning_step for layer in model.layers
                              if isinstance(layer, PruneLowMagnitude)]

    def model_input(self, fingerprints: tf.Tensor) -> tf.Tensor:
        """QAT: fingerprints clipped below at the input floor, as convert.py calibrates."""
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


def stage_args(args: argparse.Namespace, index: int) -> argparse.Namespace:
    """The flags of stage index (1-based): its own --train_dir and --summaries_dir, no --start_checkpoint.

    The folder is the path of stage names so far (prune/cluster/qat), so that
    techniques that begin with the same stages share them.
    """
    folder = os.path.join(*TECHNIQUES[args.technique][:index])
    summaries = os.path.join(args.summaries_dir, folder) if args.summaries_dir else ""
    return argparse.Namespace(**{**vars(args), "train_dir": os.path.join(args.train_dir, folder),
                                 "summaries_dir": summaries, "start_checkpoint": ""})


def run_stage(index: int, stage: Stage, weights: List[np.ndarray], processor: input_data.AudioProcessor,
              model_settings: models.ModelSettings, args: argparse.Namespace
              ) -> Tuple[tf.keras.Model, tf.keras.Model]:
    """Wraps, fine-tunes (or resumes) and strips one stage; returns (plain model, wrapped best model)."""
    base = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    base.set_weights(weights)
    plan = plan_stage(base, stage, args)
    wrapped = wrap(base, stage, plan, args)
    first_selectable_step = 0
    if stage.name == "prune":
        first_selectable_step = pruning_window(args)[1]
    elif stage.name == "prune_2by4":
        first_selectable_step = 1
    flags = stage_args(args, index)
    print(f"\nStage {index} of {args.technique}: {stage.title}, state in {flags.train_dir}")
    calibration = floor = None
    if stage.name == "qat":
        data = convert.Data(args, model_settings, processor)
        calibration, source = convert.representative_fingerprints(args, data)
        floor = convert.input_floor(calibration, args.input_clip_percentile)
        if floor is not None:
            calibration = np.maximum(calibration, floor)
            print(f"Input range starts at {floor:.2f}: percentile {args.input_clip_percentile:g} "
                  f"of the fingerprints of {source}, as convert.py calibrates")
    trainer = StageTrainer(wrapped, processor, flags, first_selectable_step, floor)
    trainer.restore()
    if calibration is not None and int(trainer.step.numpy()) == 0:
        calibrate_activation_ranges(wrapped, calibration)
    trainer.run()
    best = tf.train.latest_checkpoint(os.path.join(flags.train_dir, "best"))
    checkpoints.load_weights(wrapped, best)
    print(f"Stage {index}: best model {best}")
    return strip(wrapped, base, stage, model_settings, args), wrapped


def calibrate_activation_ranges(wrapped: tf.keras.Model, fingerprints: np.ndarray) -> None:
    """Sets the activation ranges of a fresh QAT model to their ranges on fingerprints.

    tfmot starts every activation range at [-6, 6] and moves it by an
    exponential moving average of batch ranges with decay 0.999, so a
    fine-tuning of a few thousand steps ends far from the data's ranges (a ReLU
    output keeps a negative half that wastes a bit of int8 resolution). One
    training-mode pass with the decay at 0 sets them to what post-training
    quantization would measure on the same clips; the batch-norm statistics
    the pass moves are put back.
    """
    moving = [weight for weight in wrapped.non_trainable_weights
              if "moving_mean" in weight.name or "moving_variance" in weight.name]
    saved = [weight.numpy() for weight in moving]
    moving_average_quantize = quant_ops.MovingAvgQuantize

    def range_of_this_batch(*args, **kwargs):
        return moving_average_quantize(*args, **{**kwargs, "ema_decay": 0.0})

    with mock.patch.object(quant_ops, "MovingAvgQuantize", range_of_this_batch):
        wrapped(tf.constant(fingerprints), training=True)
    for weight, value in zip(moving, saved):
        weight.assign(value)


@dataclasses.dataclass
class KernelStats:
    """What the techniques leave in one kernel."""

    name: str
    shape: Tuple[int, ...]
    sparsity: float
    unique: int
    unique_per_channel: int  # the most distinct values of one output channel (last axis)
    m_by_n: Optional[bool]  # 2:4 pattern along input channels; None where not applicable


def is_m_by_n(kernel: np.ndarray, m_by_n: Tuple[int, int] = M_BY_N) -> bool:
    """Whether every block of n consecutive input-channel weights holds at least m zeros.

    The blocks run along the input channels of TFLite's layout ([out, ..., in]),
    as in tfmot's 2:4 pruning; a last, shorter block may hold n - m non-zeros too.
    """
    zeros, block = m_by_n
    rows = np.moveaxis(kernel, -1, 0).reshape(-1, kernel.shape[-2])
    padded = np.pad(rows, ((0, 0), (0, -rows.shape[1] % block)))
    return bool(np.all(np.count_nonzero(padded.reshape(-1, block), axis=1) <= block - zeros))


def kernel_stats(model: tf.keras.Model, names: Optional[Sequence[str]] = None) -> List[KernelStats]:
    """Sparsity, distinct values and the 2:4 pattern of every kernel of a plain model.

    names: the layer names to report (e.g. those of the starting model), else the model's own.
    """
    stats = []
    for layer, name in zip(model.layers, names or [layer.name for layer in model.layers]):
        for weight in kernels(layer):
            value = weight.numpy()
            dense_or_conv = type(layer) in (tf.keras.layers.Conv2D, tf.keras.layers.Dense)
            pattern = is_m_by_n(value) if dense_or_conv and value.shape[-2] >= M_BY_N[1] else None
            short = weight.name.split("/")[-1].split(":")[0]
            channels = value.reshape(-1, value.shape[-1]).T
            stats.append(KernelStats(f"{name}/{short}", tuple(value.shape), float(np.mean(value == 0)),
                                     int(np.unique(value).size),
                                     max(int(np.unique(channel).size) for channel in channels), pattern))
    return stats


def format_kernel_stats(stats: Sequence[KernelStats]) -> str:
    """One line per kernel: shape, sparsity, distinct values (all, most of one output channel), 2:4."""
    lines = [f"{'kernel':<34}{'shape':>14}{'sparsity':>10}{'unique':>8}{'per channel':>13}{'2:4':>5}"]
    for item in stats:
        pattern = "-" if item.m_by_n is None else ("yes" if item.m_by_n else "no")
        lines.append(f"{item.name[:33]:<34}{'x'.join(map(str, item.shape)):>14}{item.sparsity:>10.3f}"
                     f"{item.unique:>8}{item.unique_per_channel:>13}{pattern:>5}")
    return "\n".join(lines)


def check_clusters(stats: Sequence[KernelStats], plan: Dict[str, Tuple[str, str]], clusters: int) -> str:
    """A line saying whether every clustered kernel holds --number_of_clusters distinct values
    (or at most that many in each output channel, where CQAT clustered per channel)."""
    clustered = [item for item in stats if plan[item.name.split("/")[0]][0] == "wrap"]
    exact = [item for item in clustered if item.unique == clusters]
    per_channel = [item for item in clustered if item.unique != clusters and item.unique_per_channel <= clusters]
    others = [f"{item.name} ({item.unique})" for item in clustered if item not in exact + per_channel]
    line = f"Clustered kernels: {len(exact)} of {len(clustered)} hold exactly {clusters} distinct values"
    if per_channel:
        line += f", {len(per_channel)} at most {clusters} per output channel"
    if others:
        line += f"; NOT clustered as asked: {', '.join(others)}"
    return line


def qat_tflite(model: tf.keras.Model) -> bytes:
    """The int8 TFLite model of a quantization-aware model, with the ranges it learned
    (int8 weights and activations; float input and output, like Arm's files)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def tflite_accuracy(model_content: bytes, fingerprints: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite model (run as test_tflite.py runs it)."""
    scores = test_tflite.TFLiteModel(content=model_content).predict(fingerprints)
    return float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else 0.0


def evaluation_sets(processor: input_data.AudioProcessor, args: argparse.Namespace,
                    model_settings: models.ModelSettings) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Name -> (fingerprints, labels): the testing partition, and the --test_dir folder if given."""
    sets = {"testing": processor.fingerprints("testing")}
    if args.test_dir:
        clips, labels, _ = input_data.load_evaluation_folder(args.test_dir, processor.words_list,
                                                             model_settings,
                                                             cache_dir=args.audio_cache_dir)
        sets[args.test_dir] = (processor.fingerprinter.numpy(clips), labels)
    return {name: data for name, data in sets.items() if len(data[1])}


def save_result(model: tf.keras.Model, train_dir: str, technique: str, accuracy: float) -> str:
    """Saves <train_dir>/<technique>_<validation accuracy>.ckpt, replacing an earlier result."""
    earlier = re.compile(re.escape(technique) + r"_\d\.\d{4}\.(ckpt\.index|ckpt\.data-.*|tflite)")
    for name in os.listdir(train_dir) if os.path.isdir(train_dir) else []:
        if earlier.fullmatch(name):
            os.remove(os.path.join(train_dir, name))
    prefix = os.path.join(train_dir, f"{technique}_{accuracy:.4f}.ckpt")
    checkpoints.save_weights_atomically(model, prefix)
    return prefix


def report_accuracy(start: tf.keras.Model, result: tf.keras.Model, wrapped: tf.keras.Model,
                    technique: str, label_count: int, sets: Dict[str, Tuple[np.ndarray, np.ndarray]],
                    prefix: str) -> None:
    """Float accuracy of start and result on every set; after QAT, writes the quantization-aware
    model's .tflite next to the checkpoint and adds its int8 accuracy."""
    qat_content = None
    if "qat" in TECHNIQUES[technique]:
        qat_content = qat_tflite(wrapped)
        path = prefix[:-len(".ckpt")] + ".tflite"
        cli.write_atomically(path, qat_content)
        print(f"Wrote {path} ({len(qat_content):,} bytes), converted from the quantization-aware model")
    for name, (fingerprints, labels) in sets.items():
        before = train.evaluate(start, fingerprints, labels, label_count)[0]
        after = train.evaluate(result, fingerprints, labels, label_count)[0]
        line = f"{name}: accuracy {before:.4f} (start, float) -> {after:.4f} ({technique}, float)"
        if qat_content is not None:
            line += f", {tflite_accuracy(qat_content, fingerprints, labels):.4f} (quantization-aware, int8)"
        print(f"{line} (N={len(labels)})")
    if qat_content is not None:
        print(f"Post-training quantization of the stripped checkpoint, as convert.py does it: "
              f"convert.py --checkpoint {prefix} with the same architecture flags")


def optimize(args: argparse.Namespace) -> str:
    """Runs the technique's stages; returns the prefix of the stripped result checkpoint."""
    check_flags(args)
    tf.keras.utils.set_random_seed(args.seed)
    model_settings = input_data.model_settings_from_flags(args)
    start = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    prefix = checkpoints.load_weights(start, args.checkpoint)
    print(f"Starting from {prefix}")
    stages = stages_of(args.technique)
    for index, stage in enumerate(stages, 1):
        print(f"Plan of stage {index}, " + describe_plan(start, stage, plan_stage(start, stage, args)))
    processor = input_data.AudioProcessor.from_flags(args, model_settings)
    weights = start.get_weights()
    result = wrapped = start
    for index, stage in enumerate(stages, 1):
        result, wrapped = run_stage(index, stage, weights, processor, model_settings, args)
        weights = result.get_weights()
    fingerprints, labels = processor.fingerprints("validation")
    accuracy = train.evaluate(result, fingerprints, labels, len(processor.words_list))[0]
    output = save_result(result, args.train_dir, args.technique, accuracy)
    print(f"\nSaved {output} (validation accuracy {accuracy:.4f}); load it with the same "
          f"--model_architecture and --model_size_info")
    stats = kernel_stats(result, [layer.name for layer in start.layers])
    print(format_kernel_stats(stats))
    if "cluster" in TECHNIQUES[args.technique]:
        cluster_stage = next(stage for stage in stages if stage.name == "cluster")
        print(check_clusters(stats, plan_stage(start, cluster_stage, args), args.number_of_clusters))
    sets = evaluation_sets(processor, args, model_settings)
    report_accuracy(start, result, wrapped, args.technique, len(processor.words_list), sets, output)
    return output


def main(args: argparse.Namespace) -> None:
    optimize(args)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    input_data.add_data_flags(parser)
    models.add_model_flags(parser)
    train.add_training_flags(parser, steps="2000,2000", learning_rate="0.0001,0.00002")
    parser.set_defaults(train_dir="/tmp/speech_commands_optimize",
                        summaries_dir="/tmp/optimize_logs")
    add_optimization_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
