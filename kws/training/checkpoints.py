"""Saving and loading model weights: atomic writes, clear errors on mismatch or damage.

Two formats are read: Keras weight checkpoints (`model.save_weights`, the
format of Arm's published models and of our best checkpoints) and the
training state that train.py keeps (`tf.train.Checkpoint` with the model
under `model/`). A folder means the newest checkpoint in it. TensorFlow is
imported at the first load or save, not with the module (its flag needs none).

Every checkpoint is read whole and checksummed (check_intact) before it is
restored, so that a truncated or altered file is one line naming it
(DamagedCheckpoint) instead of TensorFlow's traceback; a save is read back
the same way before it replaces anything, and train.py's resume falls back
from a damaged newest training state to the older one it keeps.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
from typing import Callable, Dict, List, Optional

from kws import cli, tf_env
from kws.cli import UsageError

tf = tf_env.lazy_tensorflow()

_ATTRIBUTE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_DATA_FILE = re.compile(r"\S+\.data-\d{5}-of-\d{5}")
_STATE_NUMBER = re.compile(r"-(\d+)\.index$")
_BEST_ACCURACY = re.compile(r"_(\d+\.\d+)\.ckpt$")


class DamagedCheckpoint(UsageError):
    """A checkpoint whose files are damaged or incomplete (truncated, altered, mismatched)."""


def _read_errors() -> tuple:
    """What TensorFlow raises on a damaged checkpoint: OpError (DataLoss, NotFound...),
    IndexError (a truncated file) and ValueError."""
    return tf.errors.OpError, IndexError, ValueError


def _reason(error: BaseException) -> str:
    """TensorFlow's message in a few words: first line, without its op and function names."""
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]", "", cli.first_line(error)).strip()
    return re.sub(r"\s+", " ", text)[:200] or error.__class__.__name__


def check_intact(prefix: str, what: str = "--checkpoint") -> None:
    """Reads every tensor of the checkpoint at prefix, checksums included; DamagedCheckpoint
    naming the damaged or incomplete file (what: how to name the checkpoint) otherwise."""
    data = sorted(glob.glob(glob.escape(prefix) + ".data-*")) or [prefix + ".data-00000-of-00001"]
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
    except _read_errors() as error:
        named = _DATA_FILE.search(str(error))
        damaged = named.group(0).rstrip(";:,") if named else prefix + ".index"
        raise DamagedCheckpoint(f"{what} {prefix}: {damaged} is damaged or incomplete "
                                f"({_reason(error)})")
    for name in names:
        try:
            reader.get_tensor(name)
        except _read_errors() as error:
            raise DamagedCheckpoint(f"{what} {prefix}: {', '.join(data)} is damaged or incomplete, "
                                    f"or not the data of {prefix}.index ({_reason(error)})")


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
    check_intact(prefix)
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
    except _read_errors() as error:  # read whole a moment ago: changed since
        raise DamagedCheckpoint(f"--checkpoint {prefix} is damaged or incomplete ({_reason(error)})")
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
    """model.save_weights(prefix), written into a temporary folder, read back whole
    (check_intact) and only then renamed into place: a failed or damaged save leaves the
    checkpoint at prefix, and the folder's `checkpoint` file, as they were. (Replacing a
    checkpoint of the same name is two renames, its data then its index: a crash between
    them leaves a checkpoint that check_intact reports as damaged.)"""
    folder = os.path.dirname(prefix) or "."
    name = os.path.basename(prefix)
    temporary_dir = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    temporary = os.path.join(temporary_dir, name)
    os.makedirs(temporary_dir, exist_ok=True)
    try:
        model.save_weights(temporary)
        try:
            check_intact(temporary)
        except DamagedCheckpoint as error:
            raise DamagedCheckpoint(f"could not save {prefix}: the written checkpoint does not read "
                                    f"back ({str(error).split(' (', 1)[-1]}")
        for path in glob.glob(glob.escape(temporary) + ".data-*"):
            os.replace(path, prefix + path[len(temporary):])
        os.replace(temporary + ".index", prefix + ".index")
    finally:
        shutil.rmtree(temporary_dir, ignore_errors=True)
    state = f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n'
    cli.write_atomically(os.path.join(folder, "checkpoint"), state.encode())


def best_checkpoint_prefix(train_dir: str, architecture: str, accuracy: float) -> str:
    """Where train.py keeps the best model: <train_dir>/best/<architecture>_<accuracy>.ckpt."""
    return os.path.join(train_dir, "best", f"{architecture}_{accuracy:.4f}.ckpt")


def remove_checkpoint(prefix: str) -> None:
    """Deletes the files of a checkpoint prefix."""
    for path in glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"):
        os.remove(path)


def restore_training_state(state: tf.train.Checkpoint, train_dir: str,
                           say: Callable[[str], None]) -> Optional[str]:
    """Restores train.py's state (model, optimizer, step, best_accuracy) from the newest intact
    state in <train_dir>/last; returns its prefix, None when there is none.

    A damaged newest state is one line (say) and the older one kept beside it is restored:
    training from an earlier step sees the same batches again, and best_accuracy is raised to
    the accuracy of the model in <train_dir>/best, so that no worse model replaces it.
    UsageError, saying what to do, when every kept state is damaged or another model's.
    """
    last_dir = os.path.join(train_dir, "last")
    states = sorted(glob.glob(os.path.join(glob.escape(last_dir), "ckpt-*.index")),
                    key=lambda path: int(_STATE_NUMBER.search(path).group(1))
                    if _STATE_NUMBER.search(path) else -1, reverse=True)
    damaged = []
    for prefix in (path[:-len(".index")] for path in states):
        try:
            check_intact(prefix, what="--train_dir state")
        except DamagedCheckpoint as error:
            damaged.append(str(error))
            continue
        try:
            state.restore(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise UsageError(f"--train_dir {train_dir}: {prefix} holds another model than these "
                             f"flags make ({_mismatch_line(error)}); use another --train_dir")
        if damaged:
            say(f"warning: {damaged[0]}; resuming from the older state {prefix}")
            best = tf.train.latest_checkpoint(os.path.join(train_dir, "best")) or ""
            kept = _BEST_ACCURACY.search(best)
            if kept and float(kept.group(1)) > float(state.best_accuracy.numpy()):
                state.best_accuracy.assign(float(kept.group(1)))
        return prefix
    if damaged:
        raise DamagedCheckpoint(f"{damaged[0]}; no intact state to resume from: delete {last_dir} to "
                                f"train from step 0 (its first best model replaces "
                                f"{os.path.join(train_dir, 'best')}), or use another --train_dir")
    return None
