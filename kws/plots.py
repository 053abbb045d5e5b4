"""Pictures of the figures, as PNG files in --plot_dir: confusion matrices (test.py,
test_tflite.py), the detection curve (test_streaming_accuracy.py --sweep_thresholds) and
the training curves (train.py).

matplotlib is imported at the first picture, with its Agg backend (no display): the
deployment tools' TensorFlow-free install needs it only when --plot_dir is given. Each
*_figure function returns the matplotlib Figure (its text artists say what is drawn);
save writes it atomically.
"""
import argparse
import importlib.util
import io
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from kws import cli
from kws.cli import UsageError

DPI = 100
ZERO_FALSE_ALARMS = 0.1  # per hour: where no false alarm is drawn on the log axis


def plot_dir(text: str) -> str:
    """argparse type of --plot_dir: a folder, or a path where one can be made; matplotlib installed."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError("drawing needs matplotlib: pip install -r requirements.txt")
    return text


def add_plot_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--plot_dir: where the script's pictures go."""
    parser.add_argument("--plot_dir", type=plot_dir, default=None,
                        help=f"Also draw {what} as PNG files into this folder (needs matplotlib).")


def _pyplot():
    """matplotlib.pyplot on the Agg backend; UsageError when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot_dir needs matplotlib: pip install -r requirements.txt")
    matplotlib.use("Agg")
    import matplotlib.pyplot
    return matplotlib.pyplot


def save(figure, path: str) -> str:
    """Writes figure as a PNG at path (atomically), closes it; returns path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(figure)
    cli.write_atomically(path, buffer.getvalue())
    print(f"Wrote {path}")
    return path


def file_name(kind: str, name: str) -> str:
    """<kind>_<name>.png with name reduced to letters, digits and _ (a folder's last part)."""
    slug = re.sub(r"\W+", "_", os.path.basename(os.path.normpath(name))).strip("_") or "set"
    return f"{kind}_{slug}.png"


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str):
    """The confusion matrix: true labels down, predicted across, the count in each cell."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    side = 2.5 + 0.55 * len(labels)
    figure, axes = plt.subplots(figsize=(side + 1.5, side))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels=labels, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(ticks, labels=labels)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(title)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")
    figure.tight_layout()
    return figure


def confusion_matrices(plot_dir: Optional[str], figures: Dict[str, dict], model: str) -> List[str]:
    """One confusion-matrix PNG per set of figures (evaluation.Evaluation.figures) into
    plot_dir (nothing without one); returns the paths."""
    if not plot_dir:
        return []
    return [save(confusion_figure(result["confusion_matrix"], result["labels"],
                                  f"{model} on {name}: accuracy {result['accuracy']:.4f} "
                                  f"(N={result['count']})"),
                 os.path.join(plot_dir, file_name("confusion_matrix", name)))
            for name, result in figures.items()]


def detection_figure(rows: Sequence[dict], point: Optional[dict], title: str):
    """Miss rate against false alarms per hour (log scale) over the sweep's thresholds, the
    operating point marked; no false alarm is drawn at ZERO_FALSE_ALARMS."""
    plt = _pyplot()
    rows = [row for row in rows if row["miss_rate"] is not None]
    figure, axes = plt.subplots(figsize=(7, 5))
    false_alarms = [max(row["false_alarms_per_hour"], ZERO_FALSE_ALARMS) for row in rows]
    axes.plot(false_alarms, [row["miss_rate"] for row in rows], marker=".", label="thresholds")
    if point is not None and point["miss_rate"] is not None:
        x = max(point["false_alarms_per_hour"], ZERO_FALSE_ALARMS)
        axes.plot([x], [point["miss_rate"]], marker="o", markersize=10, color="red",
                  linestyle="none", label=f"operating point: threshold {point['threshold']:g}")
        axes.annotate(f"threshold {point['threshold']:g}\nmiss rate {point['miss_rate']:.3f}",
                      (x, point["miss_rate"]), textcoords="offset points", xytext=(10, 10))
    axes.set_xscale("log")
    axes.set_xlabel(f"false alarms per hour (log scale; none drawn at {ZERO_FALSE_ALARMS:g})")
    axes.set_ylabel("miss rate")
    axes.set_ylim(-0.02, 1.02)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def detection_curve(plot_dir: Optional[str], rows: Sequence[dict], point: Optional[dict],
                    name: str) -> Optional[str]:
    """The detection curve of a sweep into plot_dir (nothing without one); returns its path."""
    if not plot_dir:
        return None
    return save(detection_figure(rows, point, f"Detection on {os.path.basename(name)}"),
                os.path.join(plot_dir, file_name("detection_curve", name)))


def training_figure(history: Dict[str, list], title: str):
    """Accuracy (training and validation) and cross entropy against steps.
    history: {"train": [(step, accuracy, cross_entropy)], "validation": [(step, accuracy)]}."""
    plt = _pyplot()
    figure, (accuracy_axes, loss_axes) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    train = np.asarray(history.get("train") or np.zeros((0, 3)), dtype=np.float64)
    validation = np.asarray(history.get("validation") or np.zeros((0, 2)), dtype=np.float64)
    accuracy_axes.plot(train[:, 0], train[:, 1], label="training (mean since the last line)")
    accuracy_axes.plot(validation[:, 0], validation[:, 1], marker="o", label="validation")
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.legend(loc="lower right")
    accuracy_axes.grid(True, alpha=0.3)
    accuracy_axes.set_title(title)
    loss_axes.plot(train[:, 0], train[:, 2], color="tab:red")
    loss_axes.set_ylabel("training cross entropy")
    loss_axes.set_xlabel("step")
    loss_axes.grid(True, alpha=0.3)
    figure.tight_layout()
    return figure


def training_curves(plot_dir: Optional[str], history: Dict[str, list], name: str
                    ) -> Optional[str]:
    """The training curves of a run into plot_dir (nothing without one); returns the path."""
    if not plot_dir:
        return None
    return save(training_figure(history, f"Training {name}"),
                os.path.join(plot_dir, file_name("training_curves", name)))
