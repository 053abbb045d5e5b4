"""optimize.py: every technique end to end on tiny models, its property checked, its output converted.

The models start from random weights and fine-tune for a few steps on a tiny
generated data set: what is checked is structure (sparsity, distinct values,
the 2:4 pattern, int8 tensors, loadable checkpoints), not accuracy.
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import optimize
from kws import cli, features, vocabulary
from kws.models import registry
from kws.optimization import report
from kws.optimization import stages as optimization_stages
from kws.optimization.settings import Settings
from kws.runtime import tflite_model
from kws.training import checkpoints

from conftest import ROOT, make_speech_commands

FEATURES = ["--dct_coefficient_count", "10", "--window_size_ms", "40", "--window_stride_ms", "20"]
TINY_DS_CNN = ["--model_architecture", "ds_cnn", "--model_size_info",
               "2", "8", "10", "4", "2", "2", "8", "3", "3", "1", "1"]
# A first convolution too small and a pointwise one wide enough for 2:4 sparsity to matter.
WIDE_DS_CNN = ["--model_architecture", "ds_cnn", "--model_size_info",
               "2", "4", "10", "4", "2", "2", "32", "3", "3", "1", "1"]
CLUSTERS = 8
FINAL_SPARSITY = 0.8
STEPS = 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_speech_commands(tmp_path_factory.mktemp("optimize") / "speech")


def parse(*flags) -> argparse.Namespace:
    return optimize.build_parser().parse_args([str(flag) for flag in flags])


def model_of(architecture_flags) -> tf.keras.Model:
    args = parse(*architecture_flags, *FEATURES, "--wanted_words", "yes,no,up", "--checkpoint", "-")
    return registry.create_model(features.settings_from_flags(args), args.model_architecture,
                                 args.model_size_info,
                                 label_count=len(vocabulary.words_list_from_flags(args)))


@pytest.fixture(scope="module")
def start_checkpoints(tmp_path_factory):
    """Randomly initialized starting checkpoints, one per tiny architecture."""
    folder = tmp_path_factory.mktemp("start")
    tf.keras.utils.set_random_seed(1)
    prefixes = {}
    for name, flags in (("tiny", TINY_DS_CNN), ("wide", WIDE_DS_CNN)):
        prefixes[name] = str(folder / f"{name}.ckpt")
        checkpoints.save_weights_atomically(model_of(flags), prefixes[name])
    return prefixes


def optimize_flags(technique, architecture_flags, checkpoint, data_dir, train_dir):
    return [*architecture_flags, *FEATURES, "--technique", technique, "--checkpoint", checkpoint,
            "--data_url", "", "--data_dir", data_dir, "--wanted_words", "yes,no,up",
            "--train_dir", train_dir, "--summaries_dir", "", "--batch_size", "16",
            "--how_many_training_steps", STEPS, "--learning_rate", "0.001",
            "--eval_step_interval", STEPS, "--number_of_clusters", CLUSTERS,
            "--final_sparsity", FINAL_SPARSITY, "--pruning_frequency", "1", "--pruning_end_step", "2"]


def kernel_table(model):
    """Layer kind ('conv2d', 'depthwise', 'pointwise', 'dense') -> KernelStats of a tiny DS-CNN."""
    stats = report.kernel_stats(model, names=["" for _ in model.layers])
    return dict(zip(("conv2d", "depthwise", "pointwise", "dense"), stats))


def converts_to_int8(model):
    """The stripped model converts with post-training full-integer quantization, and the result runs."""
    calibration = np.random.default_rng(0).normal(size=(8, model.input_shape[-1])).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = lambda: ([sample[None]] for sample in calibration)
    scores = tflite_model.TFLiteModel(content=converter.convert()).predict(calibration[:2])
    assert scores.shape == (2, model.output_shape[-1])


def assert_sparse(item, target=FINAL_SPARSITY):
    size = int(np.prod(item.shape))
    assert item.sparsity >= target - 1 / size, item  # the mask keeps round(size * (1 - target))


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    """One --train_dir for all techniques: those that begin with the same stages share them."""
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def optimized(data_dir, start_checkpoints, train_dir):
    """optimized(technique, architecture) -> kernel stats by kind of the result, which is
    loaded into a plain model and converted to int8 (by optimize.py itself after QAT)."""
    def run(technique, architecture="tiny"):
        flags = TINY_DS_CNN if architecture == "tiny" else WIDE_DS_CNN
        optimize.main(parse(*optimize_flags(technique, flags, start_checkpoints[architecture],
                                            data_dir, train_dir)))
        results = [path for path in train_dir.iterdir()
                   if re.fullmatch(re.escape(technique) + r"_\d\.\d{4}\.ckpt\.index", path.name)]
        assert len(results) == 1, results  # <train_dir>/<technique>_<accuracy>.ckpt, earlier ones replaced
        prefix = str(results[0])[:-len(".index")]
        model = model_of(flags)
        checkpoints.load_weights(model, prefix)  # plain layers, plain architecture flags
        if "qat" in technique:
            assert os.path.isfile(prefix[:-len(".ckpt")] + ".tflite")
        else:
            converts_to_int8(model)
        return kernel_table(model)
    return run


def test_cluster_leaves_number_of_clusters_values_per_kernel(optimized, capsys):
    kernels = optimized("cluster")
    for kind in ("conv2d", "pointwise", "dense"):
        assert kernels[kind].unique == CLUSTERS, kernels[kind]
    assert kernels["depthwise"].unique > CLUSTERS  # tfmot does not cluster depthwise kernels
    out = capsys.readouterr().out
    assert "(DepthwiseConv2D 3x3x8x1): tfmot does not cluster" in out
    assert f"Clustered kernels: 3 of 3 hold exactly {CLUSTERS} distinct values\n" in out


def test_prune_reaches_final_sparsity_and_resumes(optimized, capsys):
    kernels = optimized("prune")
    for kind in ("conv2d", "pointwise", "dense"):
        assert_sparse(kernels[kind])
    capsys.readouterr()
    again = optimized("prune")  # the same --train_dir: nothing left to train
    assert "Resuming from" in capsys.readouterr().out
    assert again == kernels


def test_prune_2by4_prunes_supported_layers_and_says_which_stay_dense(optimized, capsys):
    kernels = optimized("prune_2by4", architecture="wide")
    out = capsys.readouterr().out
    assert "(Conv2D 10x4x1x4): 1 input channel(s)" in out
    assert "(DepthwiseConv2D 3x3x4x1): tfmot does not prune" in out
    for kind in ("pointwise", "dense"):
        assert kernels[kind].m_by_n and kernels[kind].sparsity >= 0.5, kernels[kind]
    assert kernels["conv2d"].sparsity == 0 and kernels["depthwise"].sparsity == 0


def test_is_m_by_n_reads_blocks_along_input_channels():
    kernel = np.ones((8, 2), dtype=np.float32)  # Dense: 8 inputs, 2 outputs
    assert not report.is_m_by_n(kernel)
    kernel[[0, 1, 4, 5], 0] = 0
    kernel[[2, 3, 6, 7], 1] = 0
    assert report.is_m_by_n(kernel)
    kernel[4, 0] = 1
    assert not report.is_m_by_n(kernel)


def int8_tensor_types(content):
    """Types of all non-constant tensors except the model's input and output."""
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    ends = {detail["index"] for detail in interpreter.get_input_details() + interpreter.get_output_details()}
    return {np.dtype(detail["dtype"]).name for detail in interpreter.get_tensor_details()
            if detail["index"] not in ends and len(detail["shape"]) > 1}


def test_qat_writes_an_int8_model_and_a_plain_checkpoint(optimized, data_dir, train_dir, tmp_path, capsys):
    optimized("qat")
    out = capsys.readouterr().out
    written = list(train_dir.glob("qat_*.tflite"))
    assert len(written) == 1
    assert int8_tensor_types(written[0].read_bytes()) == {"int8"}
    assert re.search(r"testing: accuracy [\d.]+ \(start, float\) -> [\d.]+ \(qat, float\), "
                     r"[\d.]+ \(quantization-aware, int8\)", out)
    if not (ROOT / "convert.py").is_file():
        pytest.skip("convert.py is not there yet")
    checkpoint = next(train_dir.glob("qat_*.ckpt.index")).name[:-len(".index")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "convert.py"), *TINY_DS_CNN, *FEATURES, "--data_url", "",
         "--data_dir", str(data_dir), "--wanted_words", "yes,no,up",
         "--checkpoint", str(train_dir / checkpoint), "--output_file", str(tmp_path / "qat_ptq.tflite")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int8_tensor_types((tmp_path / "qat_ptq.tflite").read_bytes()) == {"int8"}
    # QAT learned on input clipped where convert.py clips it: both int8 inputs start there.
    qat_floor, qat_step = input_floor_of(written[0].read_bytes())
    ptq_floor, ptq_step = input_floor_of((tmp_path / "qat_ptq.tflite").read_bytes())
    assert abs(qat_floor - ptq_floor) <= max(qat_step, ptq_step)


def input_floor_of(content):
    """(lowest value, step) of the int8 quantization of a float-input model's input."""
    interpreter = Interpreter(model_content=content)
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    model_input = interpreter.get_input_details()[0]["index"]
    quantize = next(op for op in interpreter._get_ops_details()  # no public op list
                    if op["op_name"] == "QUANTIZE" and model_input in op["inputs"])
    scale, zero_point = tensors[quantize["outputs"][0]]["quantization"]
    return scale * (-128 - zero_point), scale


def test_qat_ranges_start_at_the_data_ranges_and_batch_norm_is_left_alone():
    model = model_of(TINY_DS_CNN)
    stage = optimization_stages.QuantizationAware()
    wrapped = stage.wrap(model, stage.plan(model, None), None)
    moving = {weight.name: weight.numpy() for weight in wrapped.non_trainable_weights
              if "moving_" in weight.name}
    fingerprints = np.random.default_rng(0).normal(size=(32, model.input_shape[-1])).astype(np.float32)
    optimization_stages.calibrate_activation_ranges(wrapped, fingerprints)
    relu = {weight.name: float(weight.numpy()) for weight in wrapped.non_trainable_weights
            if weight.name.startswith("quant_re_lu") and "output_m" in weight.name}
    assert len(relu) == 6, relu  # min and max of the three ReLUs
    assert all(value == 0.0 for name, value in relu.items() if "_min" in name), relu  # not -6
    assert all(0.0 < value != 6.0 for name, value in relu.items() if "_max" in name), relu
    for weight in wrapped.non_trainable_weights:
        if weight.name in moving:
            np.testing.assert_array_equal(weight.numpy(), moving[weight.name])


def test_qat_clips_the_input_at_the_floor_convert_calibrates_with(optimized, capsys):
    optimized("qat")
    out = capsys.readouterr().out
    assert re.search(r"Input range starts at -?[\d.]+: percentile 1 of the fingerprints of "
                     r"500 clips of the training partition .*, as convert.py calibrates", out)


def test_prune_cluster_keeps_sparsity(optimized):
    kernels = optimized("prune_cluster")
    for kind in ("conv2d", "pointwise", "dense"):
        assert_sparse(kernels[kind])
        assert kernels[kind].unique == CLUSTERS, kernels[kind]  # zero is one of the clusters


def test_prune_qat_keeps_sparsity(optimized):
    kernels = optimized("prune_qat")
    for kind in ("conv2d", "pointwise", "dense"):
        assert_sparse(kernels[kind])


def assert_clustered(kernels):
    """Dense kernels keep the cluster count; tfmot's CQAT may learn one set of centroids per
    output channel of a convolution, which keeps the count per channel."""
    assert kernels["dense"].unique == CLUSTERS, kernels["dense"]
    for kind in ("conv2d", "pointwise"):
        assert kernels[kind].unique_per_channel <= CLUSTERS, kernels[kind]


def test_cluster_qat_keeps_clusters(optimized):
    kernels = optimized("cluster_qat")
    assert_clustered(kernels)


def test_prune_cluster_qat_keeps_sparsity_and_clusters(optimized):
    kernels = optimized("prune_cluster_qat")
    assert_clustered(kernels)
    for kind in ("conv2d", "pointwise", "dense"):
        assert_sparse(kernels[kind])


def start_checkpoint(architecture, size, folder) -> str:
    checkpoint = str(folder / "start.ckpt")
    checkpoints.save_weights_atomically(
        model_of(["--model_architecture", architecture, "--model_size_info", *size]), checkpoint)
    return checkpoint


def test_unsupported_architecture_is_a_clear_error_before_training(tmp_path):
    flags = ["--model_architecture", "basic_lstm", "--model_size_info", "16"]
    args = parse(*optimize_flags("qat", flags, start_checkpoint("basic_lstm", ["16"], tmp_path),
                                 tmp_path / "no_data", tmp_path / "train"))
    with pytest.raises(cli.UsageError, match="no QAT for recurrent layers"):
        optimize.main(args)
    assert not (tmp_path / "train").exists()


def test_unsupported_architecture_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    flags = ["--model_architecture", "lstm", "--model_size_info", "8", "16"]
    command = optimize_flags("prune", flags, start_checkpoint("lstm", ["8", "16"], tmp_path),
                             tmp_path / "no_data", tmp_path / "train")
    result = subprocess.run([sys.executable, str(ROOT / "optimize.py"), *map(str, command)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("optimize.py: error:")]
    assert len(errors) == 1 and "custom recurrent cell ProjectionLSTMCell" in errors[0]


@pytest.mark.parametrize("flags, message", [
    (["--how_many_training_steps", "10", "--pruning_end_step", "3", "--pruning_frequency", "2"],
     "multiple of --pruning_frequency"),
    (["--pruning_end_step", "9"], "within the 2 steps"),
    (["--final_sparsity", "0.3"], "--initial_sparsity <= --final_sparsity"),
])
def test_inconsistent_pruning_flags_are_clear_errors(flags, message, tmp_path):
    args = parse(*optimize_flags("prune", TINY_DS_CNN, "-", tmp_path, tmp_path), *flags)
    with pytest.raises(cli.UsageError, match=message):
        Settings.from_flags(args)
