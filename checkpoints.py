"""Saving and loading model weights: atomic writes, clear errors on mismatch.

Two formats are read: Keras weight checkpoints (`model.save_weights`, the
format of Arm's published models and of our best checkpoints) and the
training state that train.py keeps (`tf.train.Checkpoint` with the model
under `model/`). A folder means the newest checkpoint in it. TensorFlow is
imported at the first load or save, not with the module (its flag needs none).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
from typing import Dict, List

import cli
from cli import UsageError

tf = cli.lazy_tensorflow()

_ATTRIBUTE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def add_checkpoint_flag(parser: argparse.ArgumentParser, help_text: str,
                        required: bool = True) -> None:
    """--checkpoint: a prefix, its .index file or a folder (resolve_checkpoint)."""
    parser.add_argument("--checkpoint", required=required, default=None,
                        help=f"{help_text}: a checkpoint prefix, its .index file, or a folder.")


def resolve_checkpoint(path: str) -> str:
    """The checkpoint prefix that a --checkpoint value names (a prefix, an .index file or a folder)."""
    if not path:
        raise UsageError("--checkpoint is required (a checkpoint prefix, its .index file or a folder)")
    if path.endswith(".index"):
        path = path[:-len(".index")]
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(glob.glob(os.path.join(path, "*.index")), key=os.path.getmtime)
        if not indexes:
            raise UsageError(f"--checkpoint {path}: folder holds no checkpoint (*.index)")
        return indexes[-1][:-len(".index")]
    if not os.path.exists(path + ".index"):
        raise UsageError(f"--checkpoint {path}: no such checkpoint ({path}.index does not exist)")
    return path


def _checkpoint_shapes(prefix: str) -> Dict[str, List[int]]:
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError) as error:
        raise UsageError(f"--checkpoint {prefix}: unreadable checkpoint ({error.__class__.__name__})")


def _model_weight_keys(shapes: Dict[str, List[int]]) -> List[str]:
    """The checkpoint keys that hold model weights (not optimizer state or bookkeeping)."""
    keys = []
    for name in shapes:
        if not name.endswith(_ATTRIBUTE_SUFFIX) or ".OPTIMIZER_SLOT" in name:
            continue
        if name.startswith("model/"):
            keys.append(name)
        elif not name.startswith(("optimizer/", "keras_api/", "save_counter/", "step/",
                                  "best_accuracy/")):
            keys.append(name)
    return keys


def load_weights(model: tf.keras.Model, checkpoint: str) -> str:
    """Restores every variable of model from checkpoint; returns the prefix used.

    Raises UsageError naming the variable whose shape disagrees, or saying
    which weights one side has and the other lacks, so that a checkpoint
    trained with other --model_architecture / --model_size_info / fingerprint
    flags is a clear one-line error.
    """
    prefix = resolve_checkpoint(checkpoint)
    shapes = _checkpoint_shapes(prefix)
    problem = f"--checkpoint {prefix} does not fit the model of these flags"
    try:
        if any(name.startswith("model/") for name in shapes):
            status = tf.train.Checkpoint(model=model).read(prefix)
        else:
            status = model.load_weights(prefix)
        status.expect_partial()  # optimizer slots are not needed for inference
        status.assert_existing_objects_matched()
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        raise UsageError(f"{problem}: {_mismatch_line(error)}")
    except AssertionError as error:
        raise UsageError(f"{problem}: the checkpoint lacks {_unmatched(error)}")
    weight_keys = _model_weight_keys(shapes)
    if len(weight_keys) > len(model.weights):
        raise UsageError(f"{problem}: it holds {len(weight_keys)} weight tensors, the model has "
                         f"{len(model.weights)} (e.g. {sorted(weight_keys)[-1].replace(_ATTRIBUTE_SUFFIX, '')})")
    return prefix


def _mismatch_line(error: Exception) -> str:
    """The line of a restore error that names the shapes, else its first line."""
    text = str(error).strip().splitlines()
    line = next((line for line in text if "shape" in line), text[0] if text else repr(error))
    return re.sub(r"\s+", " ", line)[:300]


def _unmatched(error: AssertionError) -> str:
    names = re.findall(r"name='?([\w/:.-]+)", str(error))
    return ", ".join(names[:5]) or _mismatch_line(error)


def save_weights_atomically(model: tf.keras.Model, prefix: str) -> None:
    """model.save_weights(prefix), written under a temporary name and renamed into place."""
    folder = os.path.dirname(prefix) or "."
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(prefix)}")
    model.save_weights(temporary)
    for path in glob.glob(temporary + ".data-*"):
        os.replace(path, prefix + path[len(temporary):])
    os.replace(temporary + ".index", prefix + ".index")
    name = os.path.basename(prefix)
    state = f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n'
    cli.write_atomically(os.path.join(folder, "checkpoint"), state.encode())


def best_checkpoint_prefix(train_dir: str, architecture: str, accuracy: float) -> str:
    """Where train.py keeps the best model: <train_dir>/best/<architecture>_<accuracy>.ckpt."""
    return os.path.join(train_dir, "best", f"{architecture}_{accuracy:.4f}.ckpt")


def remove_checkpoint(prefix: str) -> None:
    """Deletes the files of a checkpoint prefix."""
    for path in glob.glob(prefix + ".index") + glob.glob(prefix + ".data-*"):
        os.remove(path)
