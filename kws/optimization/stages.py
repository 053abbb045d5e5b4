"""The stages of the optimization techniques, one class each, and the TECHNIQUES table.

Technique is the technique and its parameters (Pruning, Clustering, QAT's
input clip), built once from the flags. A stage class owns everything that is
particular to its kind: its title, its checks of those parameters, which
layers it wraps (its plan rule, with the reason for every layer it leaves
alone), how it wraps a layer and the model, how it strips the wrappers again,
the first step at which its model may be kept as best, and, for
quantization-aware training, the input and activation ranges it starts from
and its own int8 model. A technique is a sequence of stages; what a later
stage preserves of the earlier ones (sparsity, clusters) is part of its
entry in TECHNIQUES. What tfmot does not say publicly is asked through
tfmot_adapter; kws/optimization/run.py runs the stages.
"""
import argparse
import dataclasses
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kws import cli, tf_env
from kws.data import speech_commands
from kws.export import calibration, quantization
from kws.optimization import tfmot_adapter
from kws.optimization.report import M_BY_N, KernelStats, check_clusters, kernels

tf = tf_env.import_tensorflow()

import tensorflow_model_optimization as tfmot  # noqa: E402  (after tf_env, which selects tf-keras)

CENTROID_INITS = {
    "kmeans_plus_plus": tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": tfmot.clustering.keras.CentroidInitialization.LINEAR,
    "density_based": tfmot.clustering.keras.CentroidInitialization.DENSITY_BASED,
    "random": tfmot.clustering.keras.CentroidInitialization.RANDOM,
}
BUILT_IN_CELLS = (tf.keras.layers.LSTMCell, tf.keras.layers.GRUCell, tf.keras.layers.SimpleRNNCell)

Plan = Dict[str, Tuple[str, str]]  # layer name -> (action, reason)


@dataclasses.dataclass(frozen=True)
class Pruning:
    """The pruning schedule within a stage's fine-tuning: polynomial decay from initial_sparsity
    to final_sparsity, the masks updated every frequency steps from begin_step to end_step."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: Optional[int]  # None: two thirds of the stage's steps, a multiple of frequency
    frequency: int
    stage_steps: int  # the steps of a stage (the sum of --how_many_training_steps)

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Pruning":
        return cls(args.initial_sparsity, args.final_sparsity, args.pruning_begin_step,
                   args.pruning_end_step, args.pruning_frequency,
                   int(sum(args.how_many_training_steps)))

    def window(self) -> Tuple[int, int]:
        """(begin, end) step of the schedule, checked against the stage's steps."""
        total, begin, frequency = self.stage_steps, self.begin_step, self.frequency
        end = self.end_step
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


@dataclasses.dataclass(frozen=True)
class Clustering:
    """Weight clustering: number_of_clusters values per kernel, centroids from centroids_init."""

    number_of_clusters: int
    centroids_init: str  # a key of CENTROID_INITS

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Clustering":
        return cls(args.number_of_clusters, args.cluster_centroids_init)


@dataclasses.dataclass(frozen=True)
class Technique:
    """What is done (--technique, a key of TECHNIQUES) and the parameters of its stages."""

    name: str
    pruning: Pruning
    clustering: Clustering
    calibration: calibration.CalibrationSettings  # QAT's ranges and input start as convert.py's

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Technique":
        return cls(args.technique, Pruning.from_flags(args), Clustering.from_flags(args),
                   calibration.CalibrationSettings.from_flags(args))

    @property
    def stages(self) -> Tuple["Stage", ...]:
        return TECHNIQUES[self.name]

    def check(self) -> None:
        """Raises UsageError for parameters one of its stages cannot work with."""
        for stage in self.stages:
            stage.check(self)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a technique, with what it must preserve of the stages before it."""

    preserve_sparsity: bool = False
    preserve_clusters: bool = False
    folder: ClassVar[str] = ""  # its part of the stage's --train_dir: prune/cluster/qat

    @property
    def title(self) -> str:
        raise NotImplementedError

    def check(self, technique: Technique) -> None:
        """Raises UsageError for parameters this stage cannot work with."""

    def plan(self, model: tf.keras.Model, technique: Technique) -> Plan:
        """Layer name -> (action, reason) for every layer of model."""
        return {layer.name: self.plan_layer(layer, technique) for layer in model.layers}

    def plan_layer(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        """(action, reason): 'wrap', 'skip' (nothing to do) or 'leave' (cannot be wrapped)."""
        if isinstance(layer, tf.keras.layers.InputLayer):
            return "skip", ""
        return self.layer_rule(layer, technique)

    def layer_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        raise NotImplementedError

    def wrap_layer(self, layer: tf.keras.layers.Layer, technique: Technique) -> tf.keras.layers.Layer:
        raise NotImplementedError

    def wrap_model(self, model: tf.keras.Model) -> tf.keras.Model:
        """The model of wrapped layers as it trains (QAT applies its scheme here)."""
        return model

    def wrap(self, base: tf.keras.Model, plan: Plan, technique: Technique) -> tf.keras.Model:
        """The stage's training model: base's planned layers wrapped, one layer at a time.

        base must be freshly built for this purpose: pruning and clustering wrap its
        own layer objects (and clustering replaces their kernels), so it serves
        afterwards only as the template of layer names.
        """
        def wrap_layer(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
            return self.wrap_layer(layer, technique) if plan[layer.name][0] == "wrap" else layer

        return self.wrap_model(tf.keras.models.clone_model(base, clone_function=wrap_layer))

    def copy_weights(self, wrapped: tf.keras.Model, base: tf.keras.Model, plain: tf.keras.Model) -> None:
        """Strips the wrappers: puts the wrapped model's weights, as inference uses them, into
        plain, a freshly built plain model."""
        raise NotImplementedError

    def first_selectable_step(self, technique: Technique) -> int:
        """The first step at which a model of this stage may be kept as best."""
        return 0

    def starting_input(self, technique: Technique, data: speech_commands.DataSource
                       ) -> Tuple[Optional[np.ndarray], Optional[float]]:
        """(fingerprints to set the starting ranges with, floor of the training input); none here."""
        return None, None

    def initialize(self, wrapped: tf.keras.Model, fingerprints: np.ndarray) -> None:
        """Sets the starting state of a fresh wrapped model from the fingerprints of starting_input."""

    def result_check(self, stats: Sequence[KernelStats], start: tf.keras.Model,
                     technique: Technique) -> Optional[str]:
        """A line saying whether the result holds what this stage promised, if it can tell."""
        return None

    def int8_model(self, wrapped: tf.keras.Model) -> Optional[bytes]:
        """The int8 .tflite this stage's own wrapped model converts to, if it makes one."""
        return None


class WeightStage(Stage):
    """A stage that acts on kernels only (pruning, clustering): tfmot's built-in layers and cells."""

    def layer_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        if not kernels(layer):
            return "skip", ""
        if isinstance(layer, tf.keras.layers.RNN) and not isinstance(layer.cell, BUILT_IN_CELLS):
            return "leave", f"custom recurrent cell {type(layer.cell).__name__}: tfmot knows only built-in cells"
        return self.kernel_rule(layer, technique)

    def kernel_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        raise NotImplementedError


class Prune(WeightStage):
    """Magnitude pruning, polynomial decay from --initial_sparsity to --final_sparsity."""

    folder = "prune"
    sparsity_m_by_n: ClassVar[Optional[Tuple[int, int]]] = None

    @property
    def title(self) -> str:
        return "magnitude pruning"

    def check(self, technique: Technique) -> None:
        pruning = technique.pruning
        pruning.window()
        if not pruning.initial_sparsity <= pruning.final_sparsity < 1:
            raise cli.UsageError(f"need --initial_sparsity <= --final_sparsity < 1, got "
                                 f"{pruning.initial_sparsity} and {pruning.final_sparsity}")

    def kernel_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        if not tfmot_adapter.can_prune(layer):
            return "leave", f"tfmot does not prune {type(layer).__name__} kernels"
        return "wrap", ""

    def schedule(self, technique: Technique) -> tfmot.sparsity.keras.PruningSchedule:
        pruning = technique.pruning
        begin, end = pruning.window()
        return tfmot.sparsity.keras.PolynomialDecay(pruning.initial_sparsity, pruning.final_sparsity,
                                                    begin, end, frequency=pruning.frequency)

    def wrap_layer(self, layer: tf.keras.layers.Layer, technique: Technique) -> tf.keras.layers.Layer:
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=self.schedule(technique), sparsity_m_by_n=self.sparsity_m_by_n)

    def copy_weights(self, wrapped: tf.keras.Model, base: tf.keras.Model, plain: tf.keras.Model) -> None:
        tfmot_adapter.apply_pruning_masks(wrapped)  # the last gradient step ran after the last masking
        plain.set_weights(tfmot.sparsity.keras.strip_pruning(wrapped).get_weights())

    def first_selectable_step(self, technique: Technique) -> int:
        return technique.pruning.window()[1]  # full sparsity reached


class Prune2by4(Prune):
    """Structured 2:4 sparsity along input channels, its masks set once, at step 1."""

    folder = "prune_2by4"
    sparsity_m_by_n = M_BY_N

    @property
    def title(self) -> str:
        return "2:4 structured pruning"

    def check(self, technique: Technique) -> None:
        """No schedule: --initial_sparsity, --final_sparsity and the pruning steps do not apply."""

    def kernel_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        action = super().kernel_rule(layer, technique)
        kind = type(layer).__name__
        if action[0] != "wrap":
            return action
        if type(layer) not in (tf.keras.layers.Conv2D, tf.keras.layers.Dense):
            return "leave", f"2:4 sparsity applies to Conv2D and Dense kernels, not {kind}"
        channels = kernels(layer)[0].shape[-2]
        if channels < M_BY_N[1]:
            return "leave", f"{channels} input channel(s): no block of {M_BY_N[1]} to prune"
        return "wrap", ""

    def schedule(self, technique: Technique) -> tfmot.sparsity.keras.PruningSchedule:
        return tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0)

    def first_selectable_step(self, technique: Technique) -> int:
        return 1


class Cluster(WeightStage):
    """Weight clustering: --number_of_clusters values per kernel, zero kept after pruning."""

    folder = "cluster"

    @property
    def title(self) -> str:
        return "sparsity-preserving clustering" if self.preserve_sparsity else "clustering"

    def check(self, technique: Technique) -> None:
        least = 3 if self.preserve_sparsity else 2  # sparsity preservation spends a cluster on zero
        clusters = technique.clustering.number_of_clusters
        if clusters < least:
            raise cli.UsageError(f"--number_of_clusters must be at least {least} for "
                                 f"{technique.name}, got {clusters}")

    def kernel_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        if not tfmot_adapter.can_cluster(layer):
            return "leave", f"tfmot does not cluster {type(layer).__name__} kernels"
        clusters = technique.clustering.number_of_clusters
        smallest = min(self.clusterable_count(weight, technique) for weight in kernels(layer))
        if smallest < clusters:
            nonzero = " non-zero" if self.preserve_sparsity else ""
            return "leave", (f"a kernel keeps only {smallest}{nonzero} weights, too few for "
                             f"{clusters} clusters")
        return "wrap", ""

    def clusterable_count(self, weight: tf.Variable, technique: Technique) -> int:
        """How many weights clustering can spread its centroids over: after pruning, the non-zero ones."""
        size = weight.shape.num_elements()
        if not self.preserve_sparsity:
            return size
        kept = round(size * (1 - technique.pruning.final_sparsity))
        return min(int(np.count_nonzero(weight.numpy())), kept)

    def wrap_layer(self, layer: tf.keras.layers.Layer, technique: Technique) -> tf.keras.layers.Layer:
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=technique.clustering.number_of_clusters,
            cluster_centroids_init=CENTROID_INITS[technique.clustering.centroids_init],
            preserve_sparsity=self.preserve_sparsity)

    def copy_weights(self, wrapped: tf.keras.Model, base: tf.keras.Model, plain: tf.keras.Model) -> None:
        plain.set_weights(tfmot.clustering.keras.strip_clustering(wrapped).get_weights())

    def result_check(self, stats: Sequence[KernelStats], start: tf.keras.Model,
                     technique: Technique) -> Optional[str]:
        return check_clusters(stats, self.plan(start, technique), technique.clustering.number_of_clusters)


class QuantizationAware(Stage):
    """Quantization-aware training with tfmot's 8-bit scheme (or its collaborative variants)."""

    folder = "qat"

    @property
    def title(self) -> str:
        kept = " and ".join(kind for kind, kept in (("sparsity", self.preserve_sparsity),
                                                     ("cluster", self.preserve_clusters)) if kept)
        return f"{kept}-preserving QAT" if kept else "quantization-aware training"

    def layer_rule(self, layer: tf.keras.layers.Layer, technique: Technique) -> Tuple[str, str]:
        """Every layer it supports, weights or not: activations are quantized everywhere."""
        batch_norm = isinstance(layer, tf.keras.layers.BatchNormalization)
        if tfmot_adapter.can_quantize(layer):
            if batch_norm:
                return "wrap", "stays float during QAT, folded into the preceding layer at conversion"
            return "wrap", ""
        if batch_norm:
            return "leave", "batch norm not right after a conv/dense layer: nothing to fold it into"
        kind = type(layer).__name__
        if isinstance(layer, tf.keras.layers.RNN):
            return "leave", f"tfmot's default 8-bit scheme has no QAT for recurrent layers ({kind})"
        return "leave", f"tfmot's default 8-bit scheme does not support {kind}"

    def scheme(self) -> tfmot.quantization.keras.QuantizeScheme:
        """Default 8-bit QAT, or its collaborative variant that keeps sparsity and/or clusters."""
        if self.preserve_clusters:
            return tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=self.preserve_sparsity)
        if self.preserve_sparsity:
            return tfmot.quantization.keras.collab_opts.Default8BitPrunePreserveQuantizeScheme()
        return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()

    def wrap_layer(self, layer: tf.keras.layers.Layer, technique: Technique) -> tf.keras.layers.Layer:
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    def wrap_model(self, model: tf.keras.Model) -> tf.keras.Model:
        with tfmot.quantization.keras.quantize_scope():
            return tfmot.quantization.keras.quantize_apply(model, scheme=self.scheme())

    def copy_weights(self, wrapped: tf.keras.Model, base: tf.keras.Model, plain: tf.keras.Model) -> None:
        by_name = {_unwrapped_name(layer): layer for layer in wrapped.layers}
        for template, target in zip(base.layers, plain.layers):
            if target.weights:
                target.set_weights(_qat_float_weights(by_name[template.name], target))

    def starting_input(self, technique: Technique, data: speech_commands.DataSource
                       ) -> Tuple[Optional[np.ndarray], Optional[float]]:
        """The clips convert.py calibrates with, clipped below where convert.py clips them."""
        fingerprints, source = calibration.representative_fingerprints(technique.calibration, data)
        floor = calibration.input_floor(fingerprints, technique.calibration.input_clip_percentile)
        if floor is not None:
            fingerprints = np.maximum(fingerprints, floor)
            print(f"Input range starts at {floor:.2f}: percentile "
                  f"{technique.calibration.input_clip_percentile:g} "
                  f"of the fingerprints of {source}, as convert.py calibrates")
        return fingerprints, floor

    def initialize(self, wrapped: tf.keras.Model, fingerprints: np.ndarray) -> None:
        calibrate_activation_ranges(wrapped, fingerprints)

    def int8_model(self, wrapped: tf.keras.Model) -> Optional[bytes]:
        """int8 weights and activations with the ranges it learned; float input and output."""
        return quantization.to_tflite(
            wrapped, quantization.MODES[(quantization.QUANTIZATION_AWARE, "float32")])


def _unwrapped_name(layer: tf.keras.layers.Layer) -> str:
    return layer.layer.name if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) else layer.name


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
    masks = tfmot_adapter.sparsity_masks(layer)
    values = {_short_name(weight, layer.layer.name): weight * masks.get(weight.ref(), 1.0)
              for weight in layer.weights if weight.name.startswith(layer.layer.name + "/")}
    return [values[_short_name(weight, target.name)].numpy() for weight in target.weights]


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
    with tfmot_adapter.batch_range_quantizers():
        wrapped(tf.constant(fingerprints), training=True)
    for weight, value in zip(moving, saved):
        weight.assign(value)


# Technique -> its stages, in order; each later stage preserves what the earlier ones made.
TECHNIQUES: Dict[str, Tuple[Stage, ...]] = {
    "cluster": (Cluster(),),
    "prune": (Prune(),),
    "prune_2by4": (Prune2by4(),),
    "qat": (QuantizationAware(),),
    "prune_cluster": (Prune(), Cluster(preserve_sparsity=True)),
    "prune_qat": (Prune(), QuantizationAware(preserve_sparsity=True)),
    "cluster_qat": (Cluster(), QuantizationAware(preserve_clusters=True)),
    "prune_cluster_qat": (Prune(), Cluster(preserve_sparsity=True),
                          QuantizationAware(preserve_sparsity=True, preserve_clusters=True)),
}
