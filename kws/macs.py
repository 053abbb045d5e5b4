"""Multiply-accumulates (MACs) of one inference: the one counting rule, for Keras layers
(kws.models.registry.count_macs) and for .tflite ops (kws.runtime.report), which only map
their layers or ops to its arguments. No TensorFlow: the runtime imports it.

An operation with weights counts one MAC per weight (bias excluded) each time it applies
them: a dense or convolution layer at each position of its output, a transposed convolution
at each position of its input, a recurrent cell or an SVDF once per time step (per clip of
a batch). Element-wise operations, activations and pooling count nothing, nor does batch
norm (folded at deployment, or bc_resnet's sub-spectral norm: a multiply and an add per value).
"""
import math
from typing import Iterable, Sequence

Shape = Sequence[int]


def positions(shape: Shape) -> int:
    """The positions of a channels-last tensor (its batch, time and space): its size without
    its last axis."""
    return math.prod(shape[:-1])


def weighted(weights: Iterable[Shape], applications: int) -> int:
    """MACs of an operation that applies weights of these shapes (no bias) applications times."""
    return applications * sum(math.prod(shape) for shape in weights)
