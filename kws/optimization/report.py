"""What the optimization techniques leave in a model's kernels: sparsity, distinct values, 2:4.

The kernels (weight matrices and filters) are what the techniques act on;
kernel_stats measures each of them in a plain model, format_kernel_stats
prints the table optimize.py ends with, and check_clusters says whether
clustering left the number of distinct values it was asked for.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kws import tf_env

tf = tf_env.import_tensorflow()

M_BY_N = (2, 4)  # structured sparsity: at least 2 zeros in every 4 input-channel weights


def kernels(layer: tf.keras.layers.Layer) -> List[tf.Variable]:
    """The weight matrices and filters of a layer (kernel, recurrent_kernel, depthwise_kernel, ...):
    what the techniques act on; biases, batch norm and peephole weights are left as they are."""
    return [weight for weight in layer.weights if "kernel" in weight.name.split("/")[-1]]


def kernel_size(layer: tf.keras.layers.Layer) -> int:
    return sum(weight.shape.num_elements() for weight in kernels(layer))


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
