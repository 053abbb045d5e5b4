"""train.py and test.py: schedule, batch-norm recalibration, resume, checkpoints, errors."""
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import train
from kws import cli, evaluation
from kws.training import trainer

from conftest import (ROOT, SHARED, TINY_SIZE_INFO, fake_speakers, load_script,
                      make_speech_commands, tiny_feature_flags)

test_py = load_script("test")

TINY_DS_CNN = ["--model_architecture", "ds_cnn", "--model_size_info",
               "2", "8", "10", "4", "2", "2", "8", "3", "3", "1", "1",
               "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]


def data_flags(data_dir) -> list:
    return ["--data_url", "", "--data_dir", str(data_dir), "--wanted_words", "yes,no,up"]


def run_script(script: str, *flags, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, flags)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_one_phase_schedule_is_constant():
    schedule = trainer.learning_rate_schedule([300], [0.001])
    assert [float(schedule(step)) for step in (0, 299, 300, 10_000)] == pytest.approx([0.001] * 4)


def test_piecewise_schedule_switches_at_phase_ends():
    schedule = trainer.learning_rate_schedule([10, 20, 30], [0.5, 0.1, 0.01])
    assert [float(schedule(step)) for step in (0, 10, 11, 30, 31)] == pytest.approx(
        [0.5, 0.5, 0.1, 0.1, 0.01])


def test_schedule_of_unequal_lengths_is_an_error():
    args = train.build_parser().parse_args(["--how_many_training_steps", "100,200",
                                            "--learning_rate", "0.001"])
    with pytest.raises(cli.UsageError, match="same number of phases"):
        trainer.TrainingSettings.from_flags(args)


def test_confusion_matrix_counts_true_rows_predicted_columns():
    matrix = evaluation.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_recalibrated_batch_norm_statistics_equal_the_batch_average():
    inputs = tf.keras.Input(shape=(3,))
    model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=5.0, scale=2.0, size=(50, 3)).astype(np.float32) for _ in range(4)]
    trainer.recalibrate_batch_norm(model, batches)
    layer = model.layers[-1]
    expected_mean = np.mean([batch.mean(axis=0) for batch in batches], axis=0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected_mean, rtol=1e-5)
    assert layer.momentum == pytest.approx(0.99)


def test_one_phase_run_trains_saves_best_and_reports_test(speech_commands_dir, tmp_path):
    result = run_script("train.py", *TINY_DS_CNN, *data_flags(speech_commands_dir),
                        "--train_dir", tmp_path / "train", "--summaries_dir", tmp_path / "logs",
                        "--how_many_training_steps", "60", "--learning_rate", "0.001",
                        "--batch_size", "16", "--eval_step_interval", "30")
    assert result.returncode == 0, result.stderr
    assert re.search(r"\d[\d,]* parameters, [\d,]+ multiply-accumulates", result.stdout)
    assert "Step 60/60" in result.stdout and "Final test accuracy" in result.stdout
    best = list((tmp_path / "train" / "best").glob("ds_cnn_*.ckpt.index"))
    assert len(best) == 1
    assert list((tmp_path / "logs" / "train").iterdir()), "TensorBoard summaries written"


def test_empty_validation_and_testing_partitions_train_and_report_test_dir(tmp_path):
    data = make_speech_commands(tmp_path / "data", speakers=fake_speakers((4, 0, 0)))
    evaluation = make_speech_commands(tmp_path / "eval", unknown_words=(), background=False,
                                      speakers=fake_speakers((1, 0, 0)))
    result = run_script("train.py", *TINY_DS_CNN, *data_flags(data), "--test_dir", evaluation,
                        "--train_dir", tmp_path / "train", "--summaries_dir", "",
                        "--how_many_training_steps", "20", "--learning_rate", "0.001",
                        "--batch_size", "8", "--eval_step_interval", "10", "--validation_percentage", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "The validation partition is empty: no model selection" in out
    assert "The testing partition of --data_dir" in out and "is empty: skipped" in out
    assert re.search(rf"Final --test_dir {re.escape(str(evaluation))} accuracy = [0-9.]+ \(N=", out)
    assert len(list((tmp_path / "train" / "best").glob("ds_cnn_*.ckpt.index"))) == 1


def test_killed_run_resumes_from_its_last_saved_step(speech_commands_dir, tmp_path):
    flags = [*TINY_DS_CNN, *data_flags(speech_commands_dir), "--train_dir", tmp_path / "train",
             "--summaries_dir", "", "--how_many_training_steps", "150,150",
             "--learning_rate", "0.001,0.0005", "--batch_size", "8", "--eval_step_interval", "25"]
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, flags)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = tmp_path / "train" / "last"
    deadline = time.time() + 240
    while time.time() < deadline and not list(last.glob("ckpt-*.index")):
        if process.poll() is not None:
            pytest.fail("train.py ended before its first checkpoint:\n" + process.stdout.read())
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = max(int(re.search(r"ckpt-(\d+)", path.name).group(1)) for path in last.glob("ckpt-*.index"))
    assert 0 < saved < 300

    result = run_script("train.py", *flags)
    assert result.returncode == 0, result.stderr
    resumed = int(re.search(r"Resuming from .* at step (\d+)", result.stdout).group(1))
    assert resumed >= saved
    steps = [int(step) for step in re.findall(r"^Step (\d+)/300", result.stdout, re.M)]
    assert steps and min(steps) > resumed and max(steps) == 300
    assert "rate 0.0005" in result.stdout, "the schedule position was restored"


def test_finished_run_started_again_trains_nothing(speech_commands_dir, tmp_path):
    flags = [*TINY_DS_CNN, *data_flags(speech_commands_dir), "--train_dir", tmp_path / "train",
             "--summaries_dir", "", "--how_many_training_steps", "20", "--learning_rate", "0.001",
             "--batch_size", "8", "--eval_step_interval", "10"]
    assert run_script("train.py", *flags).returncode == 0
    again = run_script("train.py", *flags)
    assert again.returncode == 0, again.stderr
    assert "at step 20" in again.stdout and not re.search(r"^Step \d+/20:", again.stdout, re.M)


@pytest.mark.parametrize("flags, message", [
    (["--how_many_training_steps", "100,100", "--learning_rate", "0.001"], "same number of phases"),
    (["--model_architecture", "cnn", "--model_size_info", "1", "2"], "model_size_info"),
    (["--batch_size", "0"], "--batch_size"),
    (["--no_such_flag"], "unrecognized arguments"),
])
def test_bad_flags_are_one_line_and_exit_2(speech_commands_dir, tmp_path, flags, message):
    result = run_script("train.py", "--model_architecture", "dnn", *data_flags(speech_commands_dir),
                        "--train_dir", tmp_path / "train", *flags)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_test_py_reports_partitions_and_rejects_a_mismatched_checkpoint(speech_commands_dir, tmp_path):
    flags = [*TINY_DS_CNN, *data_flags(speech_commands_dir)]
    assert run_script("train.py", *flags, "--train_dir", tmp_path / "train", "--summaries_dir", "",
                      "--how_many_training_steps", "10", "--learning_rate", "0.001",
                      "--batch_size", "8", "--plot_dir", tmp_path / "plots").returncode == 0
    best = tmp_path / "train" / "best"
    result = run_script("test.py", *flags, "--checkpoint", best, "--output_json", tmp_path / "r.json",
                        "--plot_dir", tmp_path / "plots")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "confusion_matrix_testing.png", "confusion_matrix_validation.png",
        "training_curves_ds_cnn.png"]
    figures = json.loads((tmp_path / "r.json").read_text())
    assert set(figures) == {"validation", "testing"}
    for name in figures:
        assert set(figures[name]) >= {"accuracy", "confusion_matrix", "labels", "count"}
        assert np.sum(figures[name]["confusion_matrix"]) == figures[name]["count"] > 0
        assert figures[name]["labels"] == ["_silence_", "_unknown_", "yes", "no", "up"]

    wider = ["2", "12", "10", "4", "2", "2", "8", "3", "3", "1", "1"]
    wrong = run_script("test.py", *TINY_DS_CNN[:3], *wider, *TINY_DS_CNN[14:],
                       *data_flags(speech_commands_dir), "--checkpoint", best)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "does not fit" in wrong.stderr and "shape" in wrong.stderr


ARM = SHARED / "reference" / "arm_pretrained"
ARM_CASES = {
    "DS_CNN_S": (["--model_architecture", "ds_cnn", "--model_size_info", "5", "64", "10", "4", "2", "2",
                  "64", "3", "3", "1", "1", "64", "3", "3", "1", "1", "64", "3", "3", "1", "1",
                  "64", "3", "3", "1", "1", "--window_stride_ms", "20"],
                 "DS_CNN/DS_CNN_S/ckpt", 0.9116),
    "DNN_S": (["--model_architecture", "dnn", "--model_size_info", "144", "144", "144",
               "--window_stride_ms", "40"], "DNN/DNN_S/ckpt", 0.8221),
}


@pytest.mark.parametrize("name", sorted(ARM_CASES))
def test_test_py_reproduces_arm_float_accuracy(name, shared_dir, tmp_path):
    flags, checkpoint, accuracy = ARM_CASES[name]
    result = run_script("test.py", *flags, "--dct_coefficient_count", "10", "--window_size_ms", "40",
                        "--test_dir", shared_dir / "data" / "speech_commands_test_v0.02_dev",
                        "--checkpoint", ARM / checkpoint, "--output_json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    (figures,) = json.loads((tmp_path / "r.json").read_text()).values()
    assert figures["count"] == 2738
    assert abs(figures["accuracy"] - accuracy) <= 0.002


@pytest.mark.parametrize("architecture", sorted(TINY_SIZE_INFO))
def test_every_architecture_trains_and_tests(architecture, speech_commands_dir, tmp_path):
    args = train.build_parser().parse_args([
        "--model_architecture", architecture, "--model_size_info",
        *map(str, TINY_SIZE_INFO[architecture]), *tiny_feature_flags(architecture),
        *data_flags(speech_commands_dir), "--train_dir", str(tmp_path / "train"),
        "--summaries_dir", "", "--how_many_training_steps", "4", "--learning_rate", "0.01",
        "--batch_size", "8", "--eval_step_interval", "2"])
    train.main(args)
    best = tf.train.latest_checkpoint(str(tmp_path / "train" / "best"))
    assert best and Path(best).name.startswith(architecture + "_")
    test_args = test_py.build_parser().parse_args([
        "--model_architecture", architecture, "--model_size_info",
        *map(str, TINY_SIZE_INFO[architecture]), *tiny_feature_flags(architecture),
        *data_flags(speech_commands_dir), "--checkpoint", best,
        "--output_json", str(tmp_path / "figures.json")])
    test_py.main(test_args)
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["testing"]["count"] > 0 and 0 <= figures["testing"]["accuracy"] <= 1
