"""Tests of convert.py and kws/runtime/report.py: every mode on every architecture, the
deployment report, the C array, clear errors, and the command line as a user runs it."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import convert
from kws import cli, features, tf_env
from kws.cli import UsageError
from kws.data import audio_io
from kws.export import calibration, quantization
from kws.models import registry
from kws.runtime import metadata as model_metadata
from kws.runtime import report as tflite_report
from kws.training import checkpoints

from conftest import (ROOT, SHARED, TINY_FEATURE_FLAGS, TINY_SIZE_INFO, make_speech_commands,
                      mfcc_like_fingerprints, tiny_settings)

tf = tf_env.import_tensorflow()

FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]
INT8 = quantization.MODES[(quantization.FULL_INTEGER, "float32")]  # int8 inside, float I/O
INT8_IO = quantization.MODES[(quantization.FULL_INTEGER, "int8")]
INT16X8 = quantization.MODES[(quantization.FULL_INTEGER, "int16")]

# (quantize_mode, inference_type): every mode that convert.py offers.
MODES = [
    (quantization.FULL_INTEGER, "float32"),  # the default: int8 inside, float input/output
    (quantization.FULL_INTEGER, "int8"),
    (quantization.FULL_INTEGER, "uint8"),
    (quantization.FULL_INTEGER, "int16"),  # int16x8
    (quantization.NO_QUANTIZATION, "float32"),
    (quantization.DYNAMIC_RANGE, "float32"),
    (quantization.FLOAT16, "float32"),
]
# (architecture, mode, inference type) -> the op that has no kernel in that mode.
# Every registered architecture converts in every mode today; an entry here
# documents a mode that cannot apply, and the test then checks its message.
UNSUPPORTED = {}

LABELS = 4  # _silence_, _unknown_, yes, no
SETTINGS = features.prepare_model_settings(16000, 1000, 40, 20, 10)  # TINY_FEATURE_FLAGS


def tiny_model(architecture, settings=SETTINGS, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return registry.create_model(settings, architecture, TINY_SIZE_INFO.get(architecture),
                                 label_count=LABELS)


def first_step_recurrent_macs(model):
    """What the converter folds away: the recurrent products of the first time step, whose
    state is the zero initial state."""
    return sum(layer.cell.recurrent_kernel.shape.num_elements() for layer in model.layers
               if isinstance(layer, tf.keras.layers.RNN))


def short_settings(architecture):
    """The shortest clip (fewest frames) the tiny model builds for: recurrent models
    are unrolled over the frames, and fewer frames convert much faster."""
    for duration_ms in (200, 400):
        settings = tiny_settings(architecture, duration_ms)
        try:
            registry.create_model(settings, architecture, TINY_SIZE_INFO.get(architecture),
                                  label_count=LABELS)
            return settings
        except UsageError:
            continue
    return tiny_settings(architecture)


@pytest.fixture(scope="module")
def keras_models():
    cache = {}

    def get(architecture):
        if architecture not in cache:
            settings = short_settings(architecture)
            cache[architecture] = (tiny_model(architecture, settings), settings)
        return cache[architecture]
    return get


@pytest.mark.parametrize("mode,inference_type", MODES, ids=lambda value: str(value))
@pytest.mark.parametrize("architecture", sorted(registry.MODELS))
def test_every_mode_converts_and_evaluates(keras_models, architecture, mode, inference_type):
    model, settings = keras_models(architecture)
    # Small inputs keep the random-weight models' softmax away from saturation, where
    # any rounding could flip the top label.
    representative = np.random.default_rng(0).normal(
        0, 1, (8, settings.fingerprint_size)).astype(np.float32)
    inputs = representative[:6]
    expected = model(inputs, training=False).numpy()
    missing_op = UNSUPPORTED.get((architecture, mode, inference_type))
    if missing_op:
        with pytest.raises(UsageError, match=missing_op):
            quantization.to_tflite(model, quantization.MODES[(mode, inference_type)], representative)
        return
    content = quantization.to_tflite(model, quantization.MODES[(mode, inference_type)], representative)
    tflite_model = quantization.check_runs(content, representative,
                                           quantization.MODES[(mode, inference_type)])
    input_type = {"float32": "float32", "int8": "int8", "uint8": "uint8", "int16": "int16"}
    assert tflite_model.input_type == input_type[inference_type]
    assert tflite_model.output_type == input_type[inference_type]
    scores = tflite_model.predict(inputs)
    assert scores.shape == (6, LABELS) and np.all(np.isfinite(scores))
    # Float and weight-only modes follow the Keras model closely; integer ones within a few steps.
    tolerance = {quantization.NO_QUANTIZATION: 1e-5, quantization.FLOAT16: 1e-2,
                 quantization.DYNAMIC_RANGE: 3e-2}.get(mode, 0.05)
    assert np.abs(scores - expected).mean() <= tolerance
    report = tflite_report.analyze(content)
    assert report["macs"] > 0 and report["peak_activation_bytes"] > 0
    assert report["file_bytes"] == len(content)
    if inference_type != "int16":
        # int16x8 keeps the batch dynamic: recurrent layers then fold nothing, and bc_resnet's
        # dilated depthwise convolutions run between SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND
        # on tensors whose stored shapes leave out the batch these give them.
        assert report["macs"] == registry.count_macs(model) - first_step_recurrent_macs(model)


@pytest.mark.parametrize("architecture", ["single_fc", "dnn", "cnn", "ds_cnn"])
def test_report_counts_match_the_keras_model(architecture):
    model = tiny_model(architecture)
    # Non-zero weights everywhere: the converter drops biases that are all zero.
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.05, 0.3, weight.shape) for weight in model.get_weights()])
    report = tflite_report.analyze(quantization.to_tflite(model, FLOAT32, None))
    assert report["macs"] == registry.count_macs(model)
    if architecture == "cnn":
        # The converter folds the bias of cnn's linear bottleneck layer into the next
        # layer's bias, so the deployed graph holds that many parameters fewer.
        linear_units = TINY_SIZE_INFO["cnn"][10]
        assert report["parameters"] == registry.count_parameters(model) - linear_units
    else:
        assert report["parameters"] == registry.count_parameters(model)


def test_peak_memory_of_a_tiny_dnn_equals_the_hand_computed_value():
    settings = features.prepare_model_settings(16000, 1000, 40, 40, 10)  # 25 x 10 = 250 inputs
    tf.keras.utils.set_random_seed(0)
    # 250 -> 16 -> 16 -> 4
    model = registry.create_model(settings, "dnn", (16, 16), label_count=LABELS)
    n = settings.fingerprint_size
    representative = mfcc_like_fingerprints(8, settings)

    float_report = tflite_report.analyze(
        quantization.to_tflite(model, FLOAT32, None))
    # Ops: FC(250->16), FC(16->16), FC(16->4), SOFTMAX. The first FC holds its float
    # input and output at once: 250*4 + 16*4 bytes; every later op holds less.
    assert float_report["ops"] == {"FULLY_CONNECTED": 3, "SOFTMAX": 1}
    assert float_report["peak_activation_bytes"] == 4 * n + 4 * 16 == 1064
    # Greedy plan (16-byte aligned): input [0, 1008), fc1 [1008, 1072), fc2 [0, 64),
    # logits [64, 80), softmax [0, 16): 1072 bytes.
    assert float_report["arena_bytes"] == 1072
    assert float_report["macs"] == n * 16 + 16 * 16 + 16 * 4 == 4320
    assert float_report["parameters"] == 4320  # the converter drops the all-zero biases

    int8_report = tflite_report.analyze(
        quantization.to_tflite(model, INT8, representative))
    # QUANTIZE first: the float input (4 bytes each) and its int8 copy are alive together.
    assert int8_report["ops"] == {"FULLY_CONNECTED": 3, "DEQUANTIZE": 1, "QUANTIZE": 1,
                                  "SOFTMAX": 1}
    assert int8_report["peak_activation_bytes"] == 4 * n + n == 1250
    int8_io_report = tflite_report.analyze(
        quantization.to_tflite(model, INT8_IO, representative))
    # int8 input straight into the first FC: 250 + 16 bytes.
    assert int8_io_report["peak_activation_bytes"] == n + 16 == 266


def test_liveness_plan_of_a_hand_made_graph():
    # Tensor sizes and lifetimes (first op, last op) of a diamond-shaped graph.
    sizes = {0: 100, 1: 50, 2: 30, 3: 20}
    lifetimes = {0: (0, 1), 1: (0, 2), 2: (1, 2), 3: (2, 2)}
    assert tflite_report.peak_live_bytes(sizes, lifetimes, 3) == 180  # op 1: 100 + 50 + 30
    assert tflite_report.greedy_arena_bytes(sizes, lifetimes, alignment=1) == 180


def test_c_array_holds_the_model_and_its_length(tmp_path):
    content = quantization.to_tflite(tiny_model("dnn"), INT8_IO, mfcc_like_fingerprints(4))
    tflite_path = str(tmp_path / "dnn_quantized.tflite")
    cli.write_atomically(tflite_path, content)
    source_path, header_path = tflite_report.write_c_array(tflite_path, content)
    source = open(source_path).read()
    header = open(header_path).read()
    assert "alignas(16) const unsigned char dnn_quantized_tflite[] = {" in source
    assert '#include "dnn_quantized.h"' in source
    length = int(re.search(r"const unsigned int dnn_quantized_tflite_len = (\d+);", source).group(1))
    assert length == os.path.getsize(tflite_path) == len(content)
    body = source[source.index("{") + 1:source.index("};")]
    assert bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", body)) == content
    assert "extern const unsigned char dnn_quantized_tflite[];" in header
    assert "extern const unsigned int dnn_quantized_tflite_len;" in header
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler:
        result = subprocess.run([compiler, "-std=c++11", "-c", source_path, "-o",
                                 str(tmp_path / "model.o")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_unsupported_int16_op_is_one_clear_line():
    inputs = tf.keras.Input((20,))
    normalized = tf.keras.layers.Lambda(lambda x: tf.math.l2_normalize(x, axis=-1))(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(normalized))
    representative = np.random.default_rng(0).normal(0, 1, (4, 20)).astype(np.float32)
    quantization.to_tflite(model, INT8, representative)  # int8 works
    with pytest.raises(UsageError) as error:
        quantization.to_tflite(model, INT16X8, representative)
    message = str(error.value)
    assert "L2_NORMALIZATION" in message and "int16x8" in message and "\n" not in message


def test_op_without_int16_kernel_at_run_time_is_one_clear_line():
    inputs = tf.keras.Input((20,))
    difference = tf.keras.layers.Lambda(lambda x: tf.math.squared_difference(x, 0.5 * x))(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(difference))
    representative = np.random.default_rng(0).normal(0, 1, (4, 20)).astype(np.float32)
    content = quantization.to_tflite(model, INT16X8, representative)
    with pytest.raises(UsageError) as error:
        quantization.check_runs(content, representative, INT16X8)
    message = str(error.value)
    assert "SQUARED_DIFFERENCE" in message and "int16x8" in message and "\n" not in message


def test_failing_op_reads_converter_and_interpreter_messages():
    assert quantization.failing_op("Quantization to 16x8-bit not yet supported for op: "
                              "'UNIDIRECTIONAL_SEQUENCE_LSTM'.") == "UNIDIRECTIONAL_SEQUENCE_LSTM"
    assert quantization.failing_op("loc(x): error: 'tf.TensorListReserve' op requires element_shape"
                              ) == "TENSOR_LIST_RESERVE"
    assert quantization.failing_op("Node number 3 (FULLY_CONNECTED) failed to prepare.") == \
        "FULLY_CONNECTED"


def saturated_lstm():
    """A tiny basic_lstm whose large weights drive the gates and cell state far into
    saturation, and calibration fingerprints for it."""
    settings = features.prepare_model_settings(16000, 200, 40, 20, 10)
    model = tiny_model("basic_lstm", settings)
    model.set_weights([weight * 20 for weight in model.get_weights()])
    return model, mfcc_like_fingerprints(16, settings)


def test_ranges_read_by_saturating_activations_are_limited(monkeypatch):
    model, representative = saturated_lstm()

    def limited_inputs(content):
        """How many TANH / LOGISTIC inputs have an int8 range within the limits."""
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_content=content)
        details = {tensor["index"]: tensor for tensor in interpreter.get_tensor_details()}
        count = 0
        for op in interpreter._get_ops_details():  # pylint: disable=protected-access
            limit = calibration.SATURATING_INPUT_LIMITS.get(op["op_name"])
            if limit and details[op["inputs"][0]]["quantization"][0] <= 2 * limit / 255 * 1.01:
                count += 1
        return count

    limited = limited_inputs(quantization.to_tflite(model, INT8, representative))
    monkeypatch.setattr(calibration, "SATURATING_INPUT_LIMITS", {})
    plain = quantization.to_tflite(model, INT8, representative)
    monkeypatch.undo()
    # The cell states (read by TANH) are limited; gates that come out of a SPLIT keep
    # the scale of the SPLIT's input, which TFLite requires.
    assert limited > limited_inputs(plain)


def test_products_of_limited_ranges_are_narrowed(monkeypatch):
    model, representative = saturated_lstm()

    def wider_than_inputs_allow(content):
        """How many MUL / ADD outputs of two computed tensors have an int8 range wider (by
        more than two steps) than the int8 ranges of the inputs allow."""
        from ai_edge_litert import schema_py_generated as schema
        model = schema.ModelT.InitFromPackedBuf(content, 0)
        graph = model.subgraphs[0]

        def int8_range(index):
            tensor = graph.tensors[index]
            if tensor.type != schema.TensorType.INT8 or model.buffers[tensor.buffer].data is not None:
                return None  # not an int8 tensor, or a constant
            scale, zero = float(tensor.quantization.scale[0]), int(tensor.quantization.zeroPoint[0])
            return scale * (-128 - zero), scale * (127 - zero), scale

        count = 0
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = tflite_report.OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
            ranges = [int8_range(int(index)) for index in list(op.inputs) + list(op.outputs)]
            if name not in ("MUL", "ADD") or len(ranges) != 3 or None in ranges:
                continue
            (a_low, a_high, _), (b_low, b_high, _), (low, high, step) = ranges
            if name == "MUL":
                products = [a * b for a in (a_low, a_high) for b in (b_low, b_high)]
                bound_low, bound_high = min(products), max(products)
            else:
                bound_low, bound_high = a_low + b_low, a_high + b_high
            count += low < bound_low - 2 * step or high > bound_high + 2 * step
        return count

    narrowed = quantization.to_tflite(model, INT8, representative)
    monkeypatch.setattr(calibration, "narrow_to_input_ranges", lambda graph, codes: False)
    plain = quantization.to_tflite(model, INT8, representative)
    monkeypatch.undo()
    assert wider_than_inputs_allow(plain) > 0  # the f * c products of the limited cell states
    assert wider_than_inputs_allow(narrowed) == 0


@pytest.mark.parametrize("silent_clips", [5, 30])  # 0.2% and 1.2% of the values
def test_input_range_clips_digital_silence_only(silent_clips):
    values = mfcc_like_fingerprints(50)
    values[:silent_clips, :10] = -247.0  # frames of digital silence
    clipped = calibration.clip_input_range(values, 1.0)
    assert clipped.min() > -247.0
    assert clipped.min() == pytest.approx(np.percentile(values[values > -247.0], 1.0))
    assert np.array_equal(clipped[values > clipped.min()], values[values > clipped.min()])
    assert calibration.clip_input_range(values, 0.0).min() == -247.0


# ---------------------------------------------------------------- the command line


def parse(argv):
    return convert.build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny data set, an evaluation folder, and a dnn checkpoint (briefly fit to the data)."""
    root = tmp_path_factory.mktemp("convert")
    data_dir = make_speech_commands(root / "data", words=("yes", "no"), unknown_words=("cat",))
    test_dir = root / "test_dir"
    for label, source in (("yes", "yes"), ("no", "no"), ("_unknown_", "cat")):
        (test_dir / label).mkdir(parents=True)
        for path in sorted((data_dir / source).glob("*.wav"))[:3]:
            shutil.copy(path, test_dir / label / path.name)
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    model = registry.create_model(settings, "dnn", (16, 16), label_count=LABELS)
    fingerprinter = features.Fingerprinter(settings)
    paths = sorted(data_dir.glob("*/*.wav"))
    paths = [path for path in paths if path.parent.name != "_background_noise_"]
    clips, _, _ = audio_io.load_clips([str(path) for path in paths], 16000, 16000)
    labels = np.array([{"yes": 2, "no": 3}.get(path.parent.name, 1) for path in paths])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy")
    model.fit(fingerprinter(clips), labels, epochs=20, verbose=0)
    checkpoint = str(root / "ckpt" / "dnn")
    checkpoints.save_weights_atomically(model, checkpoint)
    base = ["--model_architecture", "dnn", "--model_size_info", "16", "16",
            "--checkpoint", checkpoint, "--wanted_words", "yes,no", "--data_url", ""] + \
        TINY_FEATURE_FLAGS
    return {"root": root, "data_dir": str(data_dir), "test_dir": str(test_dir),
            "checkpoint": checkpoint, "base": base}


def test_convert_then_test_tflite_as_a_user_would(trained, tmp_path):
    output = str(tmp_path / "dnn_quantized.tflite")
    report_path = str(tmp_path / "report.json")
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "convert.py")] + trained["base"] +
        ["--data_dir", trained["data_dir"], "--test_dir", trained["test_dir"],
         "--inference_type", "int8", "--output_file", output, "--report_json", report_path,
         "--representative_samples", "40", "--c_array"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Deployment report of" in run.stdout and "peak activation memory" in run.stdout
    accuracy_line = next(line for line in run.stdout.splitlines() if line.startswith("Accuracy"))
    assert "float Keras model" in accuracy_line and "dnn_quantized.tflite" in accuracy_line
    report = json.load(open(report_path))
    assert report["report"]["file_bytes"] == os.path.getsize(output)
    assert report["report"]["input"][0]["type"] == "int8"
    with open(output[:-len(".tflite")] + ".cc") as source:  # the same bytes, metadata included
        assert f"_len = {os.path.getsize(output)};" in source.read()
    metadata = report["report"]["metadata"]  # the file carries its labels and settings
    assert metadata["labels"] == ["_silence_", "_unknown_", "yes", "no"]
    assert metadata["input"] == {"kind": "fingerprint", "streaming": False, "frames_per_call": 49,
                                 "features_per_frame": 10}
    assert metadata["model_settings"]["window_size_ms"] == 40

    figures_path = str(tmp_path / "figures.json")
    run = subprocess.run(  # no --wanted_words, no fingerprint flags: the file has them
        [sys.executable, os.path.join(ROOT, "test_tflite.py"), "--tflite_path", output,
         "--test_dir", trained["test_dir"], "--data_url", "", "--output_json", figures_path],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    figures = json.load(open(figures_path))[trained["test_dir"]]
    assert figures["count"] == 9
    # test_tflite.py measures what convert.py measured.
    assert figures["accuracy"] == pytest.approx(report["accuracy"]["tflite"])


def test_default_file_names(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    convert.main(parse(trained["base"] + ["--test_dir", trained["test_dir"], "--no-quantize"]))
    convert.main(parse(trained["base"] + ["--test_dir", trained["test_dir"],
                                          "--quantize_mode", "float16"]))
    convert.main(parse(trained["base"] + ["--data_dir", trained["data_dir"],
                                          "--representative_samples", "10"]))
    assert sorted(os.listdir(tmp_path)) == ["dnn.tflite", "dnn_float16.tflite",
                                            "dnn_quantized.tflite"]
    for name in os.listdir(tmp_path):  # every mode's file carries its settings
        metadata = model_metadata.read_metadata((tmp_path / name).read_bytes())
        assert metadata["labels"][2:] == ["yes", "no"], name
    assert quantization.default_output_file("ds_cnn", INT16X8) == \
        "ds_cnn_quantized_int16x8.tflite"
    dynamic_range = quantization.MODES[(quantization.DYNAMIC_RANGE, "float32")]
    assert quantization.default_output_file("gru", dynamic_range) == "gru_dynamic_range.tflite"


def test_only_a_test_dir_says_what_calibration_needs(trained, tmp_path):
    args = parse(trained["base"] + ["--test_dir", trained["test_dir"],
                                    "--data_dir", str(tmp_path / "nothing"),
                                    "--output_file", str(tmp_path / "model.tflite")])
    with pytest.raises(UsageError) as error:
        convert.main(args)
    message = str(error.value)
    assert "--representative_dir" in message and "--data_dir" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "model.tflite")


def test_representative_dir_must_be_asked_for(trained, tmp_path, capsys):
    output = str(tmp_path / "model.tflite")
    convert.main(parse(trained["base"] + ["--test_dir", trained["test_dir"],
                                          "--data_dir", str(tmp_path / "nothing"),
                                          "--representative_dir", trained["test_dir"],
                                          "--output_file", output]))
    assert "clips of --representative_dir" in capsys.readouterr().out
    assert os.path.exists(output)


@pytest.mark.parametrize("flags,words", [
    (["--no-quantize", "--inference_type", "int8"], "--no-quantize"),
    (["--no-quantize", "--quantize_mode", "float16"], "--no-quantize"),
    (["--quantize_mode", "dynamic_range", "--inference_type", "uint8"], "full_integer"),
])
def test_contradicting_flags_are_refused(trained, flags, words):
    with pytest.raises(UsageError, match=words):
        convert.main(parse(trained["base"] + flags))


def test_bad_flags_exit_2_with_one_line(trained, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.run(convert.main, convert.build_parser(),
                trained["base"] + ["--no-quantize", "--inference_type", "int8"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and "Traceback" not in error


# ---------------------------------------------------------------- Arm's models, real audio

ARM = SHARED / "reference" / "arm_pretrained"
DEV_SET = SHARED / "data" / "speech_commands_test_v0.02_dev"


@pytest.mark.skipif(not (ARM / "DNN").is_dir() or not DEV_SET.is_dir(),
                    reason=f"needs Arm's models and the dev folder under {SHARED} (../shared)")
def test_arm_dnn_s_int8_keeps_its_float_accuracy(tmp_path, capsys):
    # Calibration from real clips that are not the test set: ten of each v0.01 word, and noise.
    data_dir = tmp_path / "calibration"
    data_dir.mkdir()
    for word_dir in sorted((SHARED / "data" / "sample_v0.01").iterdir()):
        if word_dir.is_dir():
            (data_dir / word_dir.name).symlink_to(word_dir, target_is_directory=True)
    (data_dir / "_background_noise_").symlink_to(SHARED / "data" / "_background_noise_",
                                                target_is_directory=True)
    report_path = tmp_path / "report.json"
    convert.main(parse([
        "--model_architecture", "dnn", "--model_size_info", "144", "144", "144",
        "--checkpoint", str(ARM / "DNN" / "DNN_S" / "ckpt"), "--window_size_ms", "40",
        "--window_stride_ms", "40", "--dct_coefficient_count", "10", "--data_url", "",
        "--data_dir", str(data_dir), "--test_dir", str(DEV_SET),
        "--output_file", str(tmp_path / "dnn.tflite"), "--report_json", str(report_path)]))
    accuracy = json.load(open(report_path))["accuracy"]
    assert accuracy["float"] == pytest.approx(0.8221, abs=1e-4)  # Arm's figure for this checkpoint
    assert accuracy["tflite"] >= accuracy["float"] - 0.005  # Arm's own int8 file: 0.8035
