"""tf.distribute training: mirrored over two logical CPUs, multi_worker with two local worker
processes (checkpoints only from the chief, resume after a worker is killed), the fingerprints
computed in the step (the GPU path), and the one-line errors of bad strategy flags."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import prepare_data
import train
from kws import cli
from kws.data import augmentation, dataset, pipeline
from kws.data import shards as records
from kws.training import distribute

from conftest import ROOT, WANTED, ds_cnn_settings, processor

TINY_DS_CNN = ["--model_architecture", "ds_cnn", "--model_size_info",
               "2", "8", "10", "4", "2", "2", "8", "3", "3", "1", "1",
               "--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20",
               "--wanted_words", ",".join(WANTED), "--summaries_dir", ""]
TWO_CPUS = """
import sys
sys.path.insert(0, {root!r})
from kws import cli
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import train
argv = sys.argv[1:]
while argv:  # one train.py run after the other, their flags separated by --then
    cut = argv.index("--then") if "--then" in argv else len(argv)
    train.main(train.build_parser().parse_args(argv[:cut]))
    argv = argv[cut + 1:]
"""


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_workers(flags: list, scratch) -> list:
    """Two train.py processes, worker 0 (the chief) and worker 1, on free 127.0.0.1 ports."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TMPDIR=str(scratch),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "--distribution_strategy", "multi_worker", *flags],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return workers


def saved_step(train_dir) -> int:
    import tensorflow as tf
    return int(tf.train.load_variable(tf.train.latest_checkpoint(str(train_dir / "last")),
                                      "step/.ATTRIBUTES/VARIABLE_VALUE"))


def write_shards(data_dir, folder) -> None:
    args = prepare_data.build_parser().parse_args(
        ["--data_url", "", "--data_dir", str(data_dir), "--wanted_words", ",".join(WANTED),
         "--shards_dir", str(folder), "--clips_per_shard", "10"])
    records.write_shards(dataset.DataSettings.from_flags(args), str(folder), 10, ds_cnn_settings())


def test_mirrored_over_two_logical_cpus_trains_from_memory_and_shards(speech_commands_dir, tmp_path):
    write_shards(speech_commands_dir, tmp_path / "shards")
    common = ["--distribution_strategy", "mirrored", *TINY_DS_CNN, "--how_many_training_steps", "20",
              "--learning_rate", "0.001", "--batch_size", "8", "--eval_step_interval", "10"]
    memory = [*common, "--data_url", "", "--data_dir", str(speech_commands_dir),
              "--train_dir", str(tmp_path / "memory")]
    shards = [*common, "--shards_dir", str(tmp_path / "shards"), "--train_dir", str(tmp_path / "sharded")]
    result = subprocess.run([sys.executable, "-c", TWO_CPUS.format(root=str(ROOT)), *memory, "--then",
                             *shards], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("MirroredStrategy, 2 replica(s)") == 2
    assert result.stdout.count("Final test accuracy") == 2
    assert saved_step(tmp_path / "memory") == saved_step(tmp_path / "sharded") == 20


def test_multi_worker_resumes_after_a_worker_is_killed(speech_commands_dir, tmp_path):
    shards = tmp_path / "shards"
    write_shards(speech_commands_dir, shards)
    train_dir, logs, scratch = tmp_path / "train", tmp_path / "logs", tmp_path / "scratch"
    scratch.mkdir()
    flags = [*TINY_DS_CNN, "--shards_dir", str(shards), "--train_dir", str(train_dir),
             "--summaries_dir", str(logs), "--how_many_training_steps", "40",
             "--learning_rate", "0.001", "--batch_size", "8", "--eval_step_interval", "10"]
    chief, worker = start_workers(flags, scratch)
    deadline = time.time() + 400
    while not (train_dir / "last" / "checkpoint").exists():
        assert chief.poll() is None and time.time() < deadline, chief.communicate()[0][-3000:]
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    try:  # the chief may fail or wait for its peer forever: it goes too
        chief.wait(timeout=10)
    except subprocess.TimeoutExpired:
        chief.send_signal(signal.SIGKILL)
    chief.communicate()
    worker.communicate()
    killed_at = saved_step(train_dir)
    left_by_the_kill = set(os.listdir(scratch))
    assert 10 <= killed_at < 40

    chief, worker = start_workers(flags, scratch)
    chief_out, worker_out = (process.communicate(timeout=600)[0] for process in (chief, worker))
    assert chief.returncode == 0 and worker.returncode == 0, chief_out[-3000:] + worker_out[-3000:]
    assert f"at step {killed_at}" in chief_out and "Final test accuracy" in chief_out
    assert saved_step(train_dir) == 40  # the schedule's steps, none twice
    steps = [int(line.split()[1].split("/")[0]) for line in chief_out.splitlines()
             if line.startswith("Step ") and "/" in line.split()[1]]
    assert steps and steps[0] > killed_at
    assert "Saved" not in worker_out and "Step" not in worker_out  # only the chief reports
    assert sorted(os.listdir(train_dir)) == ["best", "last"]
    assert len(os.listdir(logs / "train")) == 2  # the chief's two runs
    assert set(os.listdir(scratch)) - left_by_the_kill <= {  # the worker deleted its checkpoints
        name for name in os.listdir(scratch) if not name.startswith("kws_worker_")}


def test_fingerprints_in_the_step_equal_the_pipeline_ones(data_dir):
    data = processor(data_dir, seed=3, augmentation=augmentation.Augmentation(
        time_masks=2, time_mask_max=5, frequency_masks=1, frequency_mask_max=3,
        augmentation_domain="audio"))  # the step computes the audio path's fingerprints
    host_x, host_labels = next(iter(data.training_dataset(16, start_step=2)))
    device_x, device_labels = next(iter(data.training_dataset(16, start_step=2, on_device=True)))
    assert set(device_x) == {"audio", "masks"}
    np.testing.assert_array_equal(host_labels, device_labels)
    np.testing.assert_allclose(pipeline.fingerprints_of(device_x, data.model_settings), host_x,
                               atol=1e-5)


def run_train(flags, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_multi_worker_without_tf_config_is_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    result = run_train(["--distribution_strategy", "multi_worker", "--train_dir", str(tmp_path)], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "needs the TF_CONFIG variable" in result.stderr


@pytest.mark.parametrize("config, message", [
    ("not json", "not a cluster with this task"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "not a cluster with this task"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "not a chief or a worker"),
])
def test_bad_tf_config_is_a_usage_error(monkeypatch, config, message):
    monkeypatch.setenv("TF_CONFIG", config)
    with pytest.raises(cli.UsageError, match=message):
        distribute.check_tf_config()


def test_batch_size_must_split_over_the_replicas():
    class ThreeReplicas:
        num_replicas_in_sync = 3

    with pytest.raises(cli.UsageError, match="--batch_size 100 does not split evenly over the 3"):
        distribute.check_batch_size(ThreeReplicas(), 100)


def test_a_folder_without_manifest_is_not_a_shards_dir(tmp_path):
    data = dataset.DataSettings.from_flags(train.build_parser().parse_args([]))
    with pytest.raises(cli.UsageError, match=r"--shards_dir .* is not a folder of shards"):
        records.ShardedData(str(tmp_path), data, None)


def test_default_strategy_is_one_device_without_gpus():
    device = distribute.DeviceSettings.from_flags(train.build_parser().parse_args([]))
    assert distribute.strategy_name(device.distribution_strategy) == "none"
    assert distribute.is_chief(distribute.make_strategy(device.distribution_strategy))


def test_optimize_refuses_to_distribute():
    import optimize
    from kws.optimization.settings import Settings
    args = optimize.build_parser().parse_args(["--checkpoint", "x", "--distribution_strategy", "mirrored"])
    with pytest.raises(cli.UsageError, match="mirrored: optimize.py fine-tunes on one device only"):
        Settings.from_flags(args)
