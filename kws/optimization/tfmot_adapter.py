"""What optimize.py needs to know of TensorFlow Model Optimization that its public API does not say.

Checked against tensorflow-model-optimization 0.8.1 with tf-keras 2.21
(TF_USE_LEGACY_KERAS=1); tests/unit/optimization/test_tfmot_adapter.py pins every behaviour
relied on here, so that a tfmot or Keras upgrade that changes one fails there
first. This is the only module that reaches into tfmot's (or Keras') private
corners, each for one reason:

- prune_registry.PruneRegistry and clustering_registry.ClusteringRegistry
  (can_prune, can_cluster): which layers tfmot can wrap, and whether it acts
  on their weights, asked without trying: prune_low_magnitude and
  cluster_weights raise on an unsupported layer only after wrapping part of a
  model, and "support" a DepthwiseConv2D by leaving its kernel alone. The
  registries' private _weight_names says which weights a wrapper acts on.
- pruning_wrapper.PruneLowMagnitude (is_pruning_wrapper, pruning_steps,
  apply_pruning_masks): the pruning wrapper class and its pruning_step and
  pruning_vars. A custom training loop must feed the wrapper the training
  step (what the UpdatePruningStep callback does in model.fit), and apply the
  masks once more after the last gradient step before strip_pruning.
- QuantizeWrapper._weight_vars (sparsity_masks): the quantizer variables of
  each wrapped weight, where pruning-preserving QAT keeps the sparsity mask
  that inference multiplies the weight with.
- quant_ops.MovingAvgQuantize (batch_range_quantizers): MovingAverageQuantizer
  calls it with a fixed ema_decay of 0.999; for one pass it is replaced by a
  call with ema_decay 0, so that the pass sets every activation range to that
  batch's range (the attribute is put back afterwards, whatever happens).
- Layer.inbound_nodes (feeding_layer), which tf-keras leaves out of its
  documentation: the layer whose output a layer reads, to tell whether tfmot's
  QAT can fold a BatchNormalization into it.
"""
import contextlib
from typing import Dict, Iterator, List, Optional

from kws import tf_env

tf = tf_env.import_tensorflow()

import tensorflow_model_optimization as tfmot  # noqa: E402  (after tf_env, which selects tf-keras)
from tensorflow_model_optimization.python.core.clustering.keras import \
    clustering_registry  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import \
    PruneLowMagnitude  # noqa: E402

CHECKED_TFMOT_VERSION = "0.8.1"
# Layers whose output tfmot's 8-bit QAT folds a following BatchNormalization into.
_FOLDING_LAYERS = (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D, tf.keras.layers.Dense)


def _acts_on_weights(registry: type, layer: tf.keras.layers.Layer) -> bool:
    """Whether a registry that supports layer also acts on its weights (it lists none for some)."""
    return isinstance(layer, tf.keras.layers.RNN) or bool(registry._weight_names(layer))


def can_prune(layer: tf.keras.layers.Layer) -> bool:
    """Whether prune_low_magnitude prunes this layer's weights (not DepthwiseConv2D's kernel)."""
    registry = prune_registry.PruneRegistry
    return registry.supports(layer) and _acts_on_weights(registry, layer)


def can_cluster(layer: tf.keras.layers.Layer) -> bool:
    """Whether cluster_weights clusters this layer's weights (not DepthwiseConv2D's kernel)."""
    registry = clustering_registry.ClusteringRegistry
    return registry.supports(layer) and _acts_on_weights(registry, layer)


def feeding_layer(layer: tf.keras.layers.Layer) -> Optional[tf.keras.layers.Layer]:
    """The layer whose output layer reads in its (first) functional model; None for none or several."""
    nodes = layer.inbound_nodes
    inbound = nodes[0].inbound_layers if nodes else None
    return inbound if isinstance(inbound, tf.keras.layers.Layer) else None


def can_quantize(layer: tf.keras.layers.Layer) -> bool:
    """Whether tfmot's default 8-bit scheme quantizes this layer: what its registry supports,
    and batch norm right after a Conv2D/DepthwiseConv2D/Dense without activation (folded into it)."""
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        inbound = feeding_layer(layer)
        return isinstance(inbound, _FOLDING_LAYERS) and inbound.get_config().get("activation") == "linear"
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry().supports(layer)


def is_pruning_wrapper(layer: tf.keras.layers.Layer) -> bool:
    """Whether layer is the wrapper that prune_low_magnitude puts around a layer."""
    return isinstance(layer, PruneLowMagnitude)


def pruning_steps(model: tf.keras.Model) -> List[tf.Variable]:
    """The step variables of model's pruning wrappers, which the training loop must set."""
    return [layer.pruning_step for layer in model.layers if is_pruning_wrapper(layer)]


def apply_pruning_masks(model: tf.keras.Model) -> None:
    """Multiplies every pruned weight of model's pruning wrappers by its mask."""
    for layer in model.layers:
        if is_pruning_wrapper(layer):
            for weight, mask, _ in layer.pruning_vars:
                weight.assign(weight * mask)


def sparsity_masks(layer: tf.keras.layers.Layer) -> Dict[object, tf.Tensor]:
    """weight.ref() -> the sparsity mask that pruning-preserving QAT multiplies the weight with,
    for the weights of a QuantizeWrapper that have one."""
    if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
        return {}
    return {weight.ref(): quantizer_vars["sparsity_mask"]
            for weight, _, quantizer_vars in layer._weight_vars if "sparsity_mask" in quantizer_vars}


@contextlib.contextmanager
def batch_range_quantizers() -> Iterator[None]:
    """Within it, a training-mode pass sets every QAT moving-average range to that batch's range
    (ema_decay 0 instead of 0.999); tfmot's own function is back in place afterwards."""
    moving_average_quantize = quant_ops.MovingAvgQuantize

    def range_of_this_batch(*args, **kwargs):
        return moving_average_quantize(*args, **{**kwargs, "ema_decay": 0.0})

    quant_ops.MovingAvgQuantize = range_of_this_batch
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = moving_average_quantize
