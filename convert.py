"""Converts a checkpoint to a TensorFlow Lite model for microcontrollers.

    python convert.py --model_architecture dnn --model_size_info 128 128 128 \\
        --checkpoint <ckpt> [--inference_type int8]

Modes:
  (default)                  post-training full-integer quantization: int8 weights
                             and activations, float32 input and output
                             -> <architecture>_quantized.tflite
  --inference_type int8      the same, with int8 input and output (uint8: uint8)
  --inference_type int16     16-bit activations, 8-bit weights (int16x8), int16
                             input and output -> <architecture>_quantized_int16x8.tflite
  --quantize_mode dynamic_range / float16
                             weights only (int8 or float16), float activations
  --no-quantize              float32 -> <architecture>.tflite

Full-integer quantization calibrates the activation ranges on a representative
data set: --representative_samples clips of the training partition of
--data_dir, augmented as train.py augments them (time shift, background noise),
or the clips of --representative_dir when asked. The evaluation folder
(--test_dir) is never used for this unless named as --representative_dir.
Two adjustments keep int8 accuracy within half a point of the float model on
Arm's DS_CNN, CNN and DNN checkpoints, and close to it on Basic_LSTM (measured
on the dev folder of Speech Commands' test set; see BENCHMARKS.md):
- the calibration fingerprints are clipped below at the --input_clip_percentile
  percentile of their values above the log-mel floor of digital silence (zero
  padding), which lies far below anything a microphone hears: covering it
  would make the int8 input step about three times coarser (that alone cost
  0.4 to 1.9 points on Arm's DS_CNN, CNN and DNN);
- the ranges of tensors read by TANH and LOGISTIC (the gates and cell state of
  unrolled LSTM/GRU cells) stop at +-4 and +-8, where the int8 outputs
  saturate, and the products and sums computed from them are narrowed to
  match (Basic_LSTM_S: -1.35 points without, -0.37 to -0.69 with, depending on
  the calibration clips; with --inference_type int16 it loses 0.15).

Afterwards the new model runs on the test partition (or --test_dir) next to
the float Keras model, and a deployment report (size, gzip size, parameters,
multiply-accumulates, peak activation memory, ops) is printed; --report_json
saves it, --c_array also writes the model as a C source/header pair for
TensorFlow Lite Micro.
"""
import argparse
import glob
import os
import re
import time
import weakref
from typing import Optional, Sequence, Tuple

import numpy as np

import cli
from cli import UsageError
import checkpoints
import input_data
import models
import test
import test_tflite
import tflite_report
import train

tf = cli.import_tensorflow()

FULL_INTEGER = "full_integer"
DYNAMIC_RANGE = "dynamic_range"
FLOAT16 = "float16"
NO_QUANTIZATION = "none"
INFERENCE_TYPES = ("float32", "int8", "uint8", "int16")
DEFAULT_REPRESENTATIVE_SAMPLES = 500
DEFAULT_INPUT_CLIP_PERCENTILE = 1.0


def add_conversion_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("conversion")
    group.add_argument("--checkpoint", required=True,
                       help="Checkpoint to convert: a prefix, its .index file, or a folder.")
    group.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=True,
                       help="Quantize after training (--no-quantize: a float32 model).")
    group.add_argument("--quantize_mode", default=None,
                       choices=(FULL_INTEGER, DYNAMIC_RANGE, FLOAT16),
                       help="Post-training quantization: full_integer (weights and activations, "
                            "calibrated on representative data), dynamic_range (int8 weights, "
                            "float activations) or float16 (float16 weights). Default: full_integer.")
    group.add_argument("--inference_type", default="float32",
                       choices=INFERENCE_TYPES + ("fp32",),
                       help="full_integer only: float32 keeps float input and output; int8 and "
                            "uint8 quantize them too; int16 makes a 16-bit activation, 8-bit "
                            "weight (int16x8) model with int16 input and output.")
    group.add_argument("--output_file", default=None,
                       help="Where to write the .tflite (default: <architecture>_quantized.tflite, "
                            "<architecture>.tflite with --no-quantize, ... in the current folder).")
    add_calibration_flags(group)
    group.add_argument("--report_json", default=None,
                       help="Also write the deployment report and accuracies to this JSON file.")
    group.add_argument("--c_array", action="store_true",
                       help="Also write the model as a C array (<output>.cc and <output>.h) for "
                            "TensorFlow Lite Micro.")


def add_calibration_flags(group: argparse._ArgumentGroup) -> None:
    """The flags of the calibration clips and input range, shared with optimize.py, whose
    quantization-aware training starts from the ranges convert.py would measure."""
    group.add_argument("--representative_samples", type=cli.positive_int,
                       default=DEFAULT_REPRESENTATIVE_SAMPLES,
                       help="How many clips calibrate full-integer quantization.")
    group.add_argument("--representative_dir", default=None,
                       help="Calibrate on the audio files under this folder (searched "
                            "recursively) instead of the training partition of --data_dir.")
    group.add_argument("--input_clip_percentile", type=float,
                       default=DEFAULT_INPUT_CLIP_PERCENTILE,
                       help="The quantized input's range starts at this percentile of the "
                            "calibration fingerprints' values above the log-mel floor of "
                            "digital silence, instead of at that floor; 0 keeps the minimum.")


def check_input_clip_percentile(percentile: float) -> None:
    """UsageError unless --input_clip_percentile is in [0, 10]."""
    if not 0 <= percentile <= 10:
        raise UsageError(f"--input_clip_percentile must be between 0 and 10, got {percentile:g}")


def conversion_mode(args: argparse.Namespace) -> Tuple[str, str]:
    """(quantization mode, inference type) of the flags, checked for contradictions."""
    inference_type = "float32" if args.inference_type == "fp32" else args.inference_type
    if not args.quantize:
        if args.quantize_mode:
            raise UsageError(f"--no-quantize contradicts --quantize_mode {args.quantize_mode}")
        if inference_type != "float32":
            raise UsageError(f"--no-quantize makes a float32 model; --inference_type "
                             f"{inference_type} needs quantization")
        return NO_QUANTIZATION, "float32"
    mode = args.quantize_mode or FULL_INTEGER
    if mode != FULL_INTEGER and inference_type != "float32":
        raise UsageError(f"--quantize_mode {mode} keeps float activations, input and output; "
                         f"--inference_type {inference_type} needs --quantize_mode {FULL_INTEGER}")
    check_input_clip_percentile(args.input_clip_percentile)
    return mode, inference_type


def default_output_file(architecture: str, mode: str, inference_type: str) -> str:
    if mode == NO_QUANTIZATION:
        return f"{architecture}.tflite"
    if mode != FULL_INTEGER:
        return f"{architecture}_{mode}.tflite"
    suffix = {"int16": "_int16x8", "uint8": "_uint8"}.get(inference_type, "")
    return f"{architecture}_quantized{suffix}.tflite"


def describe_mode(mode: str, inference_type: str) -> str:
    if mode == NO_QUANTIZATION:
        return "float32 (no quantization)"
    if mode == DYNAMIC_RANGE:
        return "dynamic-range quantization (int8 weights, float activations)"
    if mode == FLOAT16:
        return "float16 quantization (float16 weights, float activations)"
    if inference_type == "int16":
        return "full-integer int16x8 quantization (int16 activations, int8 weights, int16 input/output)"
    return (f"full-integer int8 quantization ({inference_type} input/output)")


# ---------------------------------------------------------------- data


def _has_word_folders(data_dir: str) -> bool:
    return any(os.path.basename(os.path.dirname(path)) != input_data.BACKGROUND_NOISE_DIR_NAME
               for folder in input_data.data_dirs_from_flag(data_dir)
               for path in input_data.word_folder_files(folder))


class Data:
    """The data set of the flags: an AudioProcessor, loaded at most once, when needed."""

    def __init__(self, args: argparse.Namespace, model_settings: models.ModelSettings,
                 processor: Optional[input_data.AudioProcessor] = None):
        self.args = args
        self.model_settings = model_settings
        self._processor = processor

    def usable(self) -> bool:
        """--data_dir holds word folders, or will be downloaded (no --test_dir to go by)."""
        args = self.args
        return _has_word_folders(args.data_dir) or bool(args.data_url and not args.test_dir)

    @property
    def processor(self) -> input_data.AudioProcessor:
        if self._processor is None:
            self._processor = input_data.AudioProcessor.from_flags(self.args, self.model_settings)
        return self._processor


def representative_fingerprints(args: argparse.Namespace, data: Data) -> Tuple[np.ndarray, str]:
    """The calibration fingerprints and a line saying where they come from."""
    settings = data.model_settings
    count = args.representative_samples
    rng = np.random.default_rng(args.seed)
    if args.representative_dir:
        folder = args.representative_dir
        if not os.path.isdir(folder):
            raise UsageError(f"--representative_dir {folder} is not a folder")
        paths = sorted(path for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                       if os.path.isfile(path) and path.lower().endswith(input_data.AUDIO_EXTENSIONS)
                       and input_data.BACKGROUND_NOISE_DIR_NAME not in path.split(os.sep))
        if not paths:
            raise UsageError(f"--representative_dir {folder} holds no audio files")
        chosen = [paths[i] for i in sorted(rng.permutation(len(paths))[:count])]
        clips, _, errors = input_data.load_clips(chosen, settings.sample_rate,
                                                 settings.desired_samples)
        input_data.report_unreadable(errors)
        if not len(clips):
            raise UsageError(f"--representative_dir {folder}: no readable audio")
        fingerprints = input_data.Fingerprinter(settings).numpy(clips)
        return fingerprints, f"{len(clips)} clips of --representative_dir {folder}"
    if not data.usable():
        test_dir = args.test_dir
        raise UsageError(
            f"full-integer quantization calibrates on representative clips, and --data_dir "
            f"{args.data_dir} holds no <word>/<clip> folders: pass --data_dir with training data "
            f"(Speech Commands, or a set made by synthesize_dataset.py; --data_url '' offline), or "
            f"--representative_dir FOLDER of clips like those the model will hear. The "
            f"evaluation folder --test_dir {test_dir} is not used for calibration unless you "
            f"name it as --representative_dir. (--quantize_mode dynamic_range or float16, and "
            f"--no-quantize, need no data.)")
    processor = data.processor
    partition = "training" if processor.set_size("training") else "validation"
    size = processor.set_size(partition)
    if not size:
        raise UsageError(f"--data_dir {args.data_dir}: the training and validation partitions are "
                         f"empty; no clips to calibrate quantization with")
    # Every clip of the partition once (in random order) before any is used again.
    order = np.concatenate([rng.permutation(size) for _ in range(-(-count // size))])[:count]
    rows = processor.rows[partition][order]
    labels = processor.labels[partition][order]
    audio = processor.audio[partition][rows]
    if partition == "training":
        audio = processor.augment(audio, labels, rng)  # time shift and background noise
    else:
        audio = audio.astype(np.float32) / 32768.0
    pieces = [processor.fingerprinter(tf.constant(audio[start:start + 256])).numpy()
              for start in range(0, len(audio), 256)]
    augmented = " (augmented as in training)" if partition == "training" else ""
    return (np.concatenate(pieces), f"{count} clips of the {partition} partition of "
                                    f"--data_dir {args.data_dir}{augmented}")


def evaluation_set(args: argparse.Namespace, data: Data) -> Optional[Tuple[str, np.ndarray, np.ndarray]]:
    """(name, fingerprints, labels) to compare the models on: --test_dir, or the test partition."""
    settings = data.model_settings
    if args.test_dir:
        words_list = input_data.prepare_words_list(input_data.wanted_words_from_flags(args))
        clips, labels, _ = input_data.load_evaluation_folder(args.test_dir, words_list, settings,
                                                             cache_dir=args.audio_cache_dir)
        return args.test_dir, input_data.Fingerprinter(settings).numpy(clips), labels
    if not data.usable():
        return None
    fingerprints, labels = data.processor.fingerprints("testing")
    if not len(labels):
        return None
    return "test partition", fingerprints, labels


# ---------------------------------------------------------------- conversion


def _converter(model: tf.keras.Model) -> tf.lite.TFLiteConverter:
    """A converter of the model's inference graph (training=False).

    Traced as a concrete function rather than through from_keras_model, which
    first exports a SavedModel: the same graph, in about half the time. The
    batch stays variable as in the Keras model (so the interpreter can run
    batches); a batch fixed to 1 would fold the zero initial state of unrolled
    recurrent cells into constants, and TFLite's int16 kernels abort on some of
    the resulting int16 ADDs (seen with the lstm architecture in int16x8).
    """
    concrete = _TRACED.get(model)
    if concrete is None:  # traced once per model: converting it in several modes reuses it
        spec = tf.TensorSpec(model.input_shape, model.inputs[0].dtype, name="input")
        function = tf.function(lambda fingerprint: model(fingerprint, training=False))
        concrete = _TRACED[model] = function.get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _generator(fingerprints: np.ndarray):
    def generate():
        for fingerprint in fingerprints:
            yield [fingerprint[None].astype(np.float32)]
    return generate


def clip_input_range(fingerprints: np.ndarray, percentile: float) -> np.ndarray:
    """The calibration fingerprints clipped below at their percentile-th value.

    The converter sets the input's int8 range from the smallest and largest
    calibration value. The smallest is the log-mel floor of digital silence
    (zero padding, or a time shift into silence), about -247 for the first MFCC
    coefficient, far below anything a microphone delivers; covering it makes the
    int8 step about 1.1, coarser than the spread of most coefficients. Clipping
    the lowest values lets the range cover speech and noise at about three times
    the resolution; the quantized model then clips such inputs the same way.
    """
    floor = input_floor(fingerprints, percentile)
    if floor is None:
        return fingerprints
    return np.maximum(fingerprints, floor).astype(np.float32)


def input_floor(fingerprints: np.ndarray, percentile: float) -> Optional[float]:
    """Where the quantized input range starts: the percentile-th of the fingerprint
    values above their minimum; None (the minimum) for percentile 0.

    The minimum, when many values share it, is the log-mel floor of digital
    silence. It is left out of the percentile: synthesized clips and clips
    without background noise can hold more than percentile % of such frames,
    which would otherwise keep the floor in the range.
    """
    if percentile <= 0 or not len(fingerprints):
        return None
    values = np.asarray(fingerprints).ravel()
    above = values[values > values.min()]
    return float(np.percentile(above if len(above) else values, percentile))


def quantize_full_integer(model: tf.keras.Model, fingerprints: np.ndarray, inference_type: str,
                          input_percentile: float) -> bytes:
    """Full-integer post-training quantization; inference_type sets input/output (int16: int16x8)."""
    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _generator(clip_input_range(fingerprints, input_percentile))
    if inference_type == "int16":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[inference_type]
    # Calibrate, limit the ranges that saturating activations read, then quantize:
    # what converter.convert() does in one step, with the ranges adjusted in between.
    from tensorflow.lite.python import convert as lite_convert

    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    calibrated = limit_saturating_ranges(converter.convert())
    return lite_convert.mlir_quantize(calibrated, input_data_type=io_type,
                                      output_data_type=io_type)


# An int8 TANH output has steps of 1/128 and a LOGISTIC output steps of 1/256: beyond
# these inputs their output is within a step of saturation. Ranges that the
# calibration finds wider only waste the int8 resolution of what feeds them.
SATURATING_INPUT_LIMITS = {"TANH": 4.0, "LOGISTIC": 8.0}


def limit_saturating_ranges(calibrated: bytes) -> bytes:
    """The calibrated model with the range of every tensor that TANH or LOGISTIC reads
    limited to +-4 or +-8.

    In recurrent models (unrolled LSTM and GRU cells) these are the gate
    pre-activations and the cell state: a few units that drift far into
    saturation would otherwise set a coarse int8 step for every unit of the
    tensor, and the error compounds over the time steps (measured on Arm's
    Basic_LSTM_S: -1.35 points of accuracy with the calibrated ranges, -0.4 to
    -0.6 with these). The MUL and ADD outputs computed from a limited tensor are
    then narrowed to match (narrow_to_input_ranges). Models without these
    activations are unchanged.
    """
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    names = tflite_report.OP_NAMES
    reader = schema.Model.GetRootAs(calibrated, 0)
    if not any(names.get(max(reader.OperatorCodes(i).BuiltinCode(),
                              reader.OperatorCodes(i).DeprecatedBuiltinCode()))
               in SATURATING_INPUT_LIMITS for i in range(reader.OperatorCodesLength())):
        return calibrated  # nothing to limit: skip unpacking the whole model
    model = schema.ModelT.InitFromPackedBuf(calibrated, 0)
    codes = [names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
             for code in model.operatorCodes]
    changed = False
    for graph in model.subgraphs:
        readers = {}  # tensor -> the ops that read it
        for op in graph.operators:
            for index in (op.inputs if op.inputs is not None else []):
                if index >= 0:
                    readers.setdefault(int(index), []).append(op)

        def direct_limit(index):
            """The widest limit of the saturating ops that read the tensor, else None."""
            limits = [SATURATING_INPUT_LIMITS[codes[op.opcodeIndex]]
                      for op in readers.get(index, [])
                      if codes[op.opcodeIndex] in SATURATING_INPUT_LIMITS
                      and int(op.inputs[0]) == index]
            return max(limits) if limits else None

        def limit_of(index):
            limit = direct_limit(index)
            if limit is not None:
                return limit
            # SPLIT outputs keep their input's scale (e.g. the four gates of an LSTM
            # cell): limit the input when every output goes into a saturating op.
            for op in readers.get(index, []):
                if codes[op.opcodeIndex] == "SPLIT" and int(op.inputs[-1]) == index:
                    inner = [direct_limit(int(output)) for output in op.outputs]
                    if inner and all(value is not None for value in inner):
                        return max(inner)
            return None

        for index, tensor in enumerate(graph.tensors):
            recorded = calibrated_range(tensor)
            limit = limit_of(index) if recorded is not None else None
            if limit is None:
                continue
            low, high = recorded
            if low < -limit or high > limit:
                set_calibrated_range(tensor, max(low, -limit), min(high, limit))
                changed = True
        changed |= narrow_to_input_ranges(graph, codes)
    if not changed:
        return calibrated
    builder = flatbuffers.Builder(len(calibrated) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# Output ranges that the int8 kernels fix, whatever the calibration recorded.
FIXED_OUTPUT_RANGES = {"LOGISTIC": (0.0, 1.0), "TANH": (-1.0, 1.0)}


def narrow_to_input_ranges(graph, codes: Sequence[Optional[str]]) -> bool:
    """Narrows the range of every MUL and ADD output (in the unpacked subgraph) to what
    the ranges of its two inputs allow; True when one changed.

    The calibration records float ranges. Once limit_saturating_ranges has cut
    an input's range, the quantized op can no longer reach them: in an LSTM
    cell the forget-gate product f * c grows to about +-30 in float with the
    cell state, but is at most +-4 once c is limited, and at +-30 its int8 step
    would be seven times coarser than what it holds (Arm's Basic_LSTM_S: mean
    int8 loss over eight calibration draws -0.61 points without, -0.48 with).
    """
    known = {int(op.outputs[0]): FIXED_OUTPUT_RANGES[codes[op.opcodeIndex]]
             for op in graph.operators if codes[op.opcodeIndex] in FIXED_OUTPUT_RANGES}

    def range_of(index: int) -> Optional[Tuple[float, float]]:
        return known[index] if index in known else calibrated_range(graph.tensors[index])

    changed = False
    for op in graph.operators:  # in execution order: a narrowed output narrows what follows
        code = codes[op.opcodeIndex]
        if code not in ("MUL", "ADD") or op.inputs is None or len(op.inputs) != 2:
            continue
        first, second = range_of(int(op.inputs[0])), range_of(int(op.inputs[1]))
        output = int(op.outputs[0])
        calibrated = range_of(output)
        if first is None or second is None or calibrated is None or output in known:
            continue
        if code == "MUL":
            products = [a * b for a in first for b in second]
            low, high = min(products), max(products)
        else:
            low, high = first[0] + second[0], first[1] + second[1]
        low, high = max(calibrated[0], low), min(calibrated[1], high)
        if (low, high) != calibrated and low < high:
            set_calibrated_range(graph.tensors[output], low, high)
            changed = True
    return changed


def calibrated_range(tensor) -> Optional[Tuple[float, float]]:
    """The (min, max) the calibration recorded for an unpacked tensor; None if it has none."""
    quantization = tensor.quantization
    if quantization is None or quantization.min is None or len(quantization.min) != 1:
        return None
    return float(quantization.min[0]), float(quantization.max[0])


def set_calibrated_range(tensor, low: float, high: float) -> None:
    """Replaces the (min, max) of an unpacked tensor that the quantizer will use."""
    tensor.quantization.min = np.array([low], dtype=np.float32)
    tensor.quantization.max = np.array([high], dtype=np.float32)


def convert_model(model: tf.keras.Model, mode: str, inference_type: str,
                  fingerprints: Optional[np.ndarray], input_percentile: float) -> bytes:
    """The .tflite bytes of model in the given mode; UsageError naming the op when it cannot be."""
    try:
        if mode == FULL_INTEGER:
            return quantize_full_integer(model, fingerprints, inference_type, input_percentile)
        converter = _converter(model)
        if mode == DYNAMIC_RANGE:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif mode == FLOAT16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    except Exception as error:  # noqa: BLE001  (ConverterError, RuntimeError, ValueError, ...)
        raise UsageError(conversion_failure(error, mode, inference_type)) from None


_OP_PATTERNS = (
    r"not yet supported for op: '([\w.]+)'",
    r"op: '([\w.]+)'",
    r"'(tfl?\.\w+)' op",
    r"operation '(tfl?\.\w+)'",
    r"\(([A-Z][A-Z0-9_]+)\) failed to (?:prepare|invoke)",
    r"\b(tfl?\.[A-Za-z]\w+)\b",
)


def failing_op(message: str) -> Optional[str]:
    """The op a converter or interpreter error names, in TFLite's spelling (e.g. FULLY_CONNECTED)."""
    for pattern in _OP_PATTERNS:
        match = re.search(pattern, message)
        if match:
            name = match.group(1)
            if name.startswith(("tf.", "tfl.")):
                name = name.split(".", 1)[1]
                if not name.isupper():  # tfl.fully_connected, tf.TensorListReserve
                    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()
            return name
    return None


def _mode_name(mode: str, inference_type: str) -> str:
    if mode == FULL_INTEGER:
        return "int16x8 (--inference_type int16)" if inference_type == "int16" else \
            f"full-integer int8 (--inference_type {inference_type})"
    return {"none": "float32 (--no-quantize)"}.get(mode, f"--quantize_mode {mode}")


def conversion_failure(error: Exception, mode: str, inference_type: str) -> str:
    """One line for a failed conversion: the op and the mode, and the first line of the reason."""
    message = str(error)
    op = failing_op(message)
    reason = next((line.strip() for line in message.splitlines()
                   if "error:" in line or "not yet supported" in line or "failed" in line),
                  message.strip().splitlines()[0] if message.strip() else type(error).__name__)
    reason = re.sub(r"^.*?error:\s*", "", reason)[:200]
    where = f"op {op}" if op else "the model"
    return (f"cannot convert to {_mode_name(mode, inference_type)}: {where} is not supported "
            f"in this mode ({reason}); try another --quantize_mode or --inference_type")


def check_runs(content: bytes, fingerprints: np.ndarray, mode: str,
               inference_type: str) -> test_tflite.TFLiteModel:
    """Loads the new model in the interpreter and runs it on a few clips; UsageError if it cannot."""
    try:
        model = test_tflite.TFLiteModel(content=content)
        model.predict(fingerprints[:2])
    except UsageError as error:
        message = str(error)
        op = failing_op(message)
        reason = re.sub(r"^.*?the interpreter failed \(|^.*?can run \(", "", message)
        reason = re.split(r"\.?\s*Node number", reason)[0].rstrip(").")[:200]
        where = f"op {op} has" if op else "the model has"
        raise UsageError(f"the {_mode_name(mode, inference_type)} model converted, but "
                         f"{where} no kernel for it in the TFLite interpreter ({reason})") from None
    return model


# ---------------------------------------------------------------- outputs


def write_c_array(tflite_path: str, content: bytes) -> Tuple[str, str]:
    """Writes <output>.cc and <output>.h next to the .tflite; returns their paths."""
    base = tflite_path[:-len(".tflite")] if tflite_path.endswith(".tflite") else tflite_path
    name = re.sub(r"\W", "_", os.path.basename(base))
    if not name or name[0].isdigit():
        name = "model_" + name
    name += "_tflite"
    source_path, header_path = base + ".cc", base + ".h"
    source, header = tflite_report.c_array_sources(content, name, os.path.basename(header_path))
    cli.write_atomically(header_path, header.encode())
    cli.write_atomically(source_path, source.encode())
    return source_path, header_path


def keras_figures(model: tf.keras.Model) -> dict:
    figures = {"parameters": models.count_parameters(model)}
    try:
        figures["macs"] = models.count_macs(model)
    except ValueError:
        pass
    return figures


def main(args: argparse.Namespace) -> None:
    mode, inference_type = conversion_mode(args)
    if args.test_dir and not os.path.isdir(args.test_dir):
        raise UsageError(f"--test_dir {args.test_dir} is not a folder")
    model_settings = input_data.model_settings_from_flags(args)
    words_list = input_data.prepare_words_list(input_data.wanted_words_from_flags(args))
    model = models.create_model(model_settings, args.model_architecture, args.model_size_info)
    prefix = checkpoints.load_weights(model, args.checkpoint)
    print(f"Loaded {prefix}")
    output_file = args.output_file or default_output_file(args.model_architecture, mode,
                                                          inference_type)
    data = Data(args, model_settings)

    fingerprints, calibration = None, None
    if mode == FULL_INTEGER:
        fingerprints, calibration = representative_fingerprints(args, data)
        print(f"Calibrating on {calibration}")
    print(f"Converting to {describe_mode(mode, inference_type)}")
    start = time.perf_counter()
    content = convert_model(model, mode, inference_type, fingerprints, args.input_clip_percentile)
    check_inputs = fingerprints if fingerprints is not None else np.zeros(
        (2, model_settings.fingerprint_size), np.float32)
    tflite_model = check_runs(content, check_inputs, mode, inference_type)
    cli.write_atomically(output_file, content)
    print(f"Wrote {output_file} ({len(content):,} bytes) in {time.perf_counter() - start:.1f} s")
    if args.c_array:
        source_path, header_path = write_c_array(output_file, content)
        print(f"Wrote {source_path} and {header_path}")

    report = tflite_report.analyze(content)
    print(tflite_report.format_report(report, output_file))
    figures = {"tflite_path": output_file, "mode": mode, "inference_type": inference_type,
               "architecture": args.model_architecture,
               "model_size_info": list(args.model_size_info or
                                       models.MODELS[args.model_architecture].default_size_info),
               "checkpoint": prefix, "calibration": calibration,
               "input_clip_percentile": args.input_clip_percentile if calibration else None,
               "report": report, "keras": keras_figures(model), "accuracy": {}}

    try:
        evaluation = evaluation_set(args, data)
    except UsageError as error:  # the model is written; only the comparison is missing
        print(f"Accuracy not measured: {error}")
        evaluation = None
        figures["accuracy"] = {"error": str(error)}
    if evaluation is None:
        if "error" not in figures["accuracy"]:
            print("No --test_dir and no test partition in --data_dir: accuracy not measured")
    else:
        name, eval_fingerprints, labels = evaluation
        float_predictions = np.argmax(train.predict(model, eval_fingerprints), axis=1)
        tflite_predictions = np.argmax(tflite_model.predict(eval_fingerprints), axis=1)
        float_accuracy = float(np.mean(float_predictions == labels))
        tflite_accuracy = float(np.mean(tflite_predictions == labels))
        print(f"Accuracy on {name} (N={len(labels)}): float Keras model {float_accuracy:.4f}, "
              f"{os.path.basename(output_file)} {tflite_accuracy:.4f} "
              f"({100 * (tflite_accuracy - float_accuracy):+.2f} points)")
        matrix = train.confusion_matrix(labels, tflite_predictions, len(words_list))
        figures["accuracy"] = {"set": name, "count": int(len(labels)), "float": float_accuracy,
                               "tflite": tflite_accuracy, "labels": list(words_list),
                               "confusion_matrix": matrix.tolist()}
    if args.report_json:
        test.write_report(args.report_json, figures)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    input_data.add_data_flags(parser)
    models.add_model_flags(parser)
    add_conversion_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
