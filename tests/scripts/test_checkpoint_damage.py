"""A damaged checkpoint is one line: a seeded fuzz of checkpoint files (truncated, bytes
flipped, a file missing, the index of another architecture), the scripts' exit, the resume
from a damaged training state, and saves that never replace a good checkpoint by a bad one."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from kws import cli, features, tf_env
from kws.cli import UsageError
from kws.models import registry
from kws.training import checkpoints

from conftest import ROOT, TINY_FEATURE_FLAGS, TINY_SIZE_INFO, load_script, make_speech_commands

test_py = load_script("test")

tf = tf_env.import_tensorflow()

MUTANTS = 60
SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)  # TINY_FEATURE_FLAGS
LABELS = 4


def tiny_dnn():
    tf.keras.utils.set_random_seed(0)
    return registry.create_model(SETTINGS, "dnn", (16, 16), label_count=LABELS)


def data_file(prefix) -> str:
    return glob.glob(str(prefix) + ".data-*")[0]


def one_line_naming_the_checkpoint(error: UsageError, prefix) -> None:
    message = str(error)
    assert "\n" not in message and str(prefix) in message, message


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """A tiny dnn checkpoint and a tiny cnn one (another architecture): their files' bytes."""
    root = tmp_path_factory.mktemp("checkpoints")
    dnn = tiny_dnn()
    checkpoints.save_weights_atomically(dnn, str(root / "dnn" / "model.ckpt"))
    tf.keras.utils.set_random_seed(1)
    cnn = registry.create_model(SETTINGS, "cnn", TINY_SIZE_INFO["cnn"], label_count=LABELS)
    checkpoints.save_weights_atomically(cnn, str(root / "cnn" / "model.ckpt"))
    files = {name: (open(str(root / name / "model.ckpt.index"), "rb").read(),
                    open(data_file(root / name / "model.ckpt"), "rb").read())
             for name in ("dnn", "cnn")}
    return files, [w.numpy() for w in dnn.weights]


def mutant(files, rng: np.random.Generator):
    """(kind, index bytes or None, data bytes or None) of one damaged dnn checkpoint."""
    index, data = files["dnn"]
    kind = str(rng.choice(["truncate data", "flip data", "truncate index", "flip index",
                       "missing index", "missing data", "other index"]))
    if kind.startswith("truncate"):
        chosen = data if kind.endswith("data") else index
        cut = chosen[:rng.integers(0, len(chosen))]
        return (kind, index, cut) if kind.endswith("data") else (kind, cut, data)
    if kind.startswith("flip"):
        chosen = bytearray(data if kind.endswith("data") else index)
        for _ in range(rng.integers(1, 7)):
            position = rng.integers(0, len(chosen))
            chosen[position] = (chosen[position] + rng.integers(1, 256)) % 256
        return (kind, index, bytes(chosen)) if kind.endswith("data") else (kind, bytes(chosen), data)
    if kind == "missing index":
        return kind, None, data
    if kind == "missing data":
        return kind, index, None
    return kind, files["cnn"][0], data


def write(prefix, index, data) -> None:
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    for path, content in ((prefix + ".index", index), (prefix + ".data-00000-of-00001", data)):
        if content is not None:
            with open(path, "wb") as handle:
                handle.write(content)


def test_every_damaged_checkpoint_loads_intact_or_is_one_line(originals, tmp_path):
    files, weights = originals
    rng = np.random.default_rng(20260611)
    model = tiny_dnn()
    outcomes = {}
    for i in range(MUTANTS):
        kind, index, data = mutant(files, rng)
        prefix = str(tmp_path / f"m{i:02d}" / "model.ckpt")
        write(prefix, index, data)
        for weight in model.weights:
            weight.assign(tf.zeros_like(weight))
        try:
            checkpoints.load_weights(model, prefix)
        except UsageError as error:
            one_line_naming_the_checkpoint(error, prefix)
            assert kind == "missing index" or "damaged or incomplete" in str(error), (kind, error)
            outcomes.setdefault(kind, set()).add("error")
        else:  # a change that touched nothing read (e.g. index padding): the weights are intact
            for loaded, original in zip(model.weights, weights):
                np.testing.assert_array_equal(loaded.numpy(), original)
            outcomes.setdefault(kind, set()).add("loaded")
    assert {kind for kind, seen in outcomes.items() if "error" in seen} >= {
        "truncate data", "flip data", "truncate index", "other index"}, outcomes
    for kind in ("truncate data", "flip data", "missing data", "other index"):
        assert outcomes.get(kind, {"error"}) == {"error"}, (kind, outcomes)


def test_truncated_data_is_one_line_and_exit_2_in_test_py(originals, tmp_path, capsys):
    files, _ = originals
    prefix = str(tmp_path / "ckpt" / "model.ckpt")
    write(prefix, files["dnn"][0], files["dnn"][1][:len(files["dnn"][1]) // 2])
    with pytest.raises(SystemExit) as exit:
        cli.run(test_py.main, test_py.build_parser(),
                ["--model_architecture", "dnn", "--model_size_info", "16", "16",
                 "--wanted_words", "yes,no", "--checkpoint", prefix, "--data_url", ""]
                + TINY_FEATURE_FLAGS)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    assert f"{prefix}.data-00000-of-00001 is damaged or incomplete" in error
    assert "Read less bytes than requested" in error


def tiny_state():
    model = tiny_dnn()
    step = tf.Variable(0, dtype=tf.int64)
    best = tf.Variable(-1.0, dtype=tf.float64)
    return tf.train.Checkpoint(model=model, step=step, best_accuracy=best), step, best


def save_states(train_dir, steps, best_accuracy):
    state, step, best = tiny_state()
    best.assign(best_accuracy)
    for number in steps:
        step.assign(number)
        tf.train.CheckpointManager(state, str(train_dir / "last"), max_to_keep=2).save(
            checkpoint_number=number)


def test_damaged_newest_state_resumes_from_the_older_one(tmp_path):
    save_states(tmp_path, (10, 20), 0.5)
    checkpoints.save_weights_atomically(tiny_dnn(), checkpoints.best_checkpoint_prefix(
        str(tmp_path), "dnn", 0.75))
    newest = data_file(tmp_path / "last" / "ckpt-20")
    with open(newest, "r+b") as handle:
        handle.truncate(os.path.getsize(newest) // 3)
    state, step, best = tiny_state()
    said = []
    prefix = checkpoints.restore_training_state(state, str(tmp_path), said.append)
    assert prefix == str(tmp_path / "last" / "ckpt-10") and int(step.numpy()) == 10
    assert len(said) == 1 and said[0].startswith("warning: ") and newest in said[0]
    assert "resuming from the older state" in said[0]
    assert float(best.numpy()) == pytest.approx(0.75)  # the kept best is not replaced by worse


def test_every_state_damaged_says_what_to_do(tmp_path):
    save_states(tmp_path, (10, 20), 0.5)
    for path in glob.glob(str(tmp_path / "last" / "ckpt-*.data-*")):
        with open(path, "r+b") as handle:
            handle.seek(40)
            handle.write(b"\xff" * 8)
    with pytest.raises(checkpoints.DamagedCheckpoint) as error:
        checkpoints.restore_training_state(tiny_state()[0], str(tmp_path), print)
    message = str(error.value)
    assert "\n" not in message and "ckpt-20" in message and f"delete {tmp_path / 'last'}" in message


def test_state_of_another_model_is_one_line(tmp_path):
    save_states(tmp_path, (10,), 0.5)
    model = registry.create_model(SETTINGS, "dnn", (8,), label_count=LABELS)
    other = tf.train.Checkpoint(model=model, step=tf.Variable(0, dtype=tf.int64),
                                best_accuracy=tf.Variable(-1.0, dtype=tf.float64))
    with pytest.raises(UsageError, match="holds another model than these flags make"):
        checkpoints.restore_training_state(other, str(tmp_path), print)
    assert checkpoints.restore_training_state(other, str(tmp_path / "new"), print) is None


@pytest.mark.parametrize("failure", ["damaged", "interrupted"])
def test_a_failed_save_leaves_the_previous_checkpoint_as_it_was(tmp_path, monkeypatch, failure):
    prefix = str(tmp_path / "best" / "dnn_0.5000.ckpt")
    checkpoints.save_weights_atomically(tiny_dnn(), prefix)
    before = {path: open(path, "rb").read() for path in glob.glob(str(tmp_path / "best" / "*"))}
    model = tiny_dnn()
    save = model.save_weights

    def broken_save(path, *args, **kwargs):
        save(path, *args, **kwargs)
        if failure == "interrupted":
            raise KeyboardInterrupt
        with open(data_file(path), "r+b") as handle:
            handle.truncate(100)

    monkeypatch.setattr(model, "save_weights", broken_save)
    expected = checkpoints.DamagedCheckpoint if failure == "damaged" else KeyboardInterrupt
    with pytest.raises(expected):
        checkpoints.save_weights_atomically(model, prefix)
    after = {path: open(path, "rb").read() for path in glob.glob(str(tmp_path / "best" / "*"))}
    assert after == before and not glob.glob(str(tmp_path / "best" / ".tmp-*"))


def test_train_py_resumes_past_a_damaged_newest_state(tmp_path):
    data_dir = make_speech_commands(tmp_path / "data")
    flags = ["--model_architecture", "dnn", "--model_size_info", "8", "--data_url", "",
             "--data_dir", str(data_dir), "--wanted_words", "yes,no,up", "--train_dir",
             str(tmp_path / "train"), "--summaries_dir", "", "--learning_rate", "0.001",
             "--batch_size", "8", "--eval_step_interval", "10"] + TINY_FEATURE_FLAGS

    def train(steps: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *flags,
                               "--how_many_training_steps", steps],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert train("20").returncode == 0
    newest = data_file(tmp_path / "train" / "last" / "ckpt-20")
    with open(newest, "r+b") as handle:
        handle.truncate(os.path.getsize(newest) // 2)
    run = train("30")
    assert run.returncode == 0, run.stderr
    warning = [line for line in run.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and newest in warning[0] and "ckpt-10" in warning[0]
    assert "at step 10" in run.stdout and "Step 30/30" in run.stdout
