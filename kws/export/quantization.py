"""Quantization: the conversion modes as one table, and the conversion to TensorFlow Lite.

Every mode is one row of MODES, keyed by (--quantize_mode, --inference_type):
its converter settings, its default file name and its description. A new
mode is one row. Full-integer modes calibrate on representative fingerprints
(kws/export/calibration.py); the int8 ones calibrate first, adjust the recorded ranges
(calibration.limit_saturating_ranges) and then quantize.
"""
import argparse
import dataclasses
import re
import weakref
from typing import Dict, List, Optional, Tuple

import numpy as np

from kws import tf_env
from kws.cli import UsageError
from kws.export import calibration
from kws.runtime.tflite_model import AUDIO_INPUT, TFLiteModel

tf = tf_env.import_tensorflow()

FULL_INTEGER = "full_integer"
DYNAMIC_RANGE = "dynamic_range"
FLOAT16 = "float16"
NO_QUANTIZATION = "none"
QUANTIZATION_AWARE = "qat"
INFERENCE_TYPES = ("float32", "int8", "uint8", "int16")


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way to convert a model: converter settings, file name and words."""

    quantization: str  # FULL_INTEGER, DYNAMIC_RANGE, FLOAT16, NO_QUANTIZATION or QUANTIZATION_AWARE
    inference_type: str  # the type of the model's input and output
    description: str  # what the mode makes, printed before converting
    flags: str  # the flags that ask for it, in error lines
    file_suffix: str  # default file: <architecture><file_suffix>.tflite
    optimize: bool = True  # converter.optimizations = [Optimize.DEFAULT]
    float16_weights: bool = False
    calibrated: bool = False  # full integer: activation ranges from representative data
    int16_activations: bool = False  # int16x8
    batch_one: bool = True  # a batch of 1 and constant shapes, as a microcontroller runs it

    @property
    def io_type(self) -> "tf.DType":
        return {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8,
                "int16": tf.int16}[self.inference_type]


def _full_integer(inference_type: str, file_suffix: str) -> Mode:
    return Mode(FULL_INTEGER, inference_type,
                f"full-integer int8 quantization ({inference_type} input/output)",
                f"full-integer int8 (--inference_type {inference_type})", file_suffix,
                calibrated=True)


MODES: Dict[Tuple[str, str], Mode] = {
    (NO_QUANTIZATION, "float32"): Mode(NO_QUANTIZATION, "float32", "float32 (no quantization)",
                                       "float32 (--no-quantize)", "", optimize=False),
    (DYNAMIC_RANGE, "float32"): Mode(
        DYNAMIC_RANGE, "float32", "dynamic-range quantization (int8 weights, float activations)",
        f"--quantize_mode {DYNAMIC_RANGE}", f"_{DYNAMIC_RANGE}"),
    (FLOAT16, "float32"): Mode(
        FLOAT16, "float32", "float16 quantization (float16 weights, float activations)",
        f"--quantize_mode {FLOAT16}", f"_{FLOAT16}", float16_weights=True),
    (FULL_INTEGER, "float32"): _full_integer("float32", "_quantized"),
    (FULL_INTEGER, "int8"): _full_integer("int8", "_quantized"),
    (FULL_INTEGER, "uint8"): _full_integer("uint8", "_quantized_uint8"),
    (FULL_INTEGER, "int16"): Mode(
        FULL_INTEGER, "int16",
        "full-integer int16x8 quantization (int16 activations, int8 weights, int16 input/output)",
        "int16x8 (--inference_type int16)", "_quantized_int16x8", calibrated=True,
        int16_activations=True, batch_one=False),
    # optimize.py: the int8 model of a quantization-aware model, with the ranges it learned.
    (QUANTIZATION_AWARE, "float32"): Mode(
        QUANTIZATION_AWARE, "float32", "int8 with the ranges learned in quantization-aware training",
        "quantization-aware int8", "_qat"),
}


def add_quantization_flags(group: argparse._ArgumentGroup) -> None:
    """--quantize, --quantize_mode and --inference_type: which row of MODES."""
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


def mode_from_flags(args: argparse.Namespace) -> Mode:
    """The mode the flags ask for, checked for contradictions."""
    inference_type = "float32" if args.inference_type == "fp32" else args.inference_type
    if not args.quantize:
        if args.quantize_mode:
            raise UsageError(f"--no-quantize contradicts --quantize_mode {args.quantize_mode}")
        if inference_type != "float32":
            raise UsageError(f"--no-quantize makes a float32 model; --inference_type "
                             f"{inference_type} needs quantization")
        return MODES[(NO_QUANTIZATION, "float32")]
    quantization = args.quantize_mode or FULL_INTEGER
    if quantization != FULL_INTEGER and inference_type != "float32":
        raise UsageError(f"--quantize_mode {quantization} keeps float activations, input and "
                         f"output; --inference_type {inference_type} needs --quantize_mode "
                         f"{FULL_INTEGER}")
    return MODES[(quantization, inference_type)]


def default_output_file(architecture: str, mode: Mode) -> str:
    return f"{architecture}{mode.file_suffix}.tflite"


def _converter(model: tf.keras.Model, mode: Mode) -> tf.lite.TFLiteConverter:
    """A converter of the model's inference graph (training=False).

    Traced as a concrete function rather than through from_keras_model, which
    first exports a SavedModel: the same graph, in about half the time. With a
    batch of 1 (mode.batch_one), as on a microcontroller, every shape is
    constant: reshapes need no SHAPE / STRIDED_SLICE / PACK arithmetic, and the
    zero initial state of unrolled recurrent cells is a constant instead of a
    FILL that TensorFlow Lite for Microcontrollers cannot run. int16x8 keeps
    the variable batch: TFLite's int16 kernels abort on some int16 ADDs of
    such constant states (seen with the lstm architecture).
    """
    batch = 1 if mode.batch_one else None
    traced = _TRACED.setdefault(model, {})
    if batch not in traced and hasattr(model, "concrete_function"):  # stream_model: batch 1
        traced[batch] = model.concrete_function(1)
    if batch not in traced:  # traced once per model and batch: several modes reuse it
        spec = tf.TensorSpec([batch] + list(model.input_shape[1:]), model.inputs[0].dtype,
                             name=input_name(model))
        function = tf.function(lambda fingerprint: model(fingerprint, training=False))
        traced[batch] = function.get_concrete_function(spec)
    # The converter saves the function with an object that holds its variables: the variables
    # alone, as a Keras model would have every layer's call traced again for the SavedModel
    # (bc_resnet's 170 layers: 6 s instead of 32).
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return tf.lite.TFLiteConverter.from_concrete_functions([traced[batch]], holder)


_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _generator(inputs: np.ndarray, dtype: "tf.DType"):
    def generate():
        for one in inputs:
            if isinstance(one, dict):  # a streaming model's call: frames and states by name
                yield {name: np.asarray(value)[None] for name, value in one.items()}
            else:
                yield [one[None].astype(dtype.as_numpy_dtype)]
    return generate


def input_name(model: tf.keras.Model) -> str:
    """The name of a converted model's input: audio for a raw-audio model (kws/export/raw_audio.py's
    input, by which tflite_model recognises one), else input, as in Arm's files."""
    return AUDIO_INPUT if model.inputs[0].name.split(":")[0] == AUDIO_INPUT else "input"


def to_tflite(model: tf.keras.Model, mode: Mode, fingerprints: Optional[np.ndarray] = None,
                  input_percentile: float = calibration.DEFAULT_INPUT_CLIP_PERCENTILE,
                  float_scope: Optional[str] = None) -> bytes:
    """The .tflite bytes of model in mode; UsageError naming the op when it cannot be.

    fingerprints: the representative data of the calibrated modes (of the model's input).
    float_scope: in the int8 modes, the ops under this name (a raw-audio model's
    fingerprint front end) stay float32, the model's input keeps its type, and
    the int8 part starts where their output is quantized.
    """
    try:
        converter = _converter(model, mode)
        if mode.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode.float16_weights:
            converter.target_spec.supported_types = [tf.float16]
        if not mode.calibrated:
            return converter.convert()
        representative = calibration.clip_input_range(fingerprints, input_percentile)
        if hasattr(model, "representative_inputs"):  # stream_model: its calls' frames and states
            converter.representative_dataset = _generator(
                model.representative_inputs(representative), tf.float32)
        else:
            converter.representative_dataset = _generator(representative, model.inputs[0].dtype)
        if mode.int16_activations:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = converter.inference_output_type = mode.io_type
            return converter.convert()
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return _quantize(calibration.limit_saturating_ranges(_calibrate(converter)), mode.io_type,
                         float_scope)
    except Exception as error:  # noqa: BLE001  (ConverterError, RuntimeError, ValueError, ...)
        raise UsageError(conversion_failure(error, mode)) from None


def _calibrate(converter: tf.lite.TFLiteConverter) -> bytes:
    """The float model with the activation ranges the calibration recorded, not yet quantized:
    the first half of converter.convert() (a private switch of TFLiteConverter)."""
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    return converter.convert()


def _quantize(calibrated: bytes, io_type: "tf.DType", float_scope: Optional[str] = None) -> bytes:
    """The second half: quantizes a calibrated model (TensorFlow Lite's internal mlir_quantize),
    but for the ops whose outputs are named under float_scope, and then the input stays as is."""
    from tensorflow.lite.python import convert as lite_convert

    if not float_scope:
        return lite_convert.mlir_quantize(calibrated, input_data_type=io_type,
                                          output_data_type=io_type)
    return lite_convert.mlir_quantize(calibrated, input_data_type=tf.float32,
                                      output_data_type=io_type,
                                      denylisted_nodes=tensor_names(calibrated, float_scope))


def tensor_names(content: bytes, scope: str) -> List[str]:
    """The names of a model's tensors that the ops under the name scope compute."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    names = [graph.Tensors(graph.Operators(i).Outputs(j)).Name().decode()
             for i in range(graph.OperatorsLength())
             for j in range(graph.Operators(i).OutputsLength())]
    return [name for name in names if f"/{scope}/" in name]


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


def conversion_failure(error: Exception, mode: Mode) -> str:
    """One line for a failed conversion: the op and the mode, and the first line of the reason."""
    message = str(error)
    op = failing_op(message)
    reason = next((line.strip() for line in message.splitlines()
                   if "error:" in line or "not yet supported" in line or "failed" in line),
                  message.strip().splitlines()[0] if message.strip() else type(error).__name__)
    reason = re.sub(r"^.*?error:\s*", "", reason)[:200]
    where = f"op {op}" if op else "the model"
    return (f"cannot convert to {mode.flags}: {where} is not supported "
            f"in this mode ({reason}); try another --quantize_mode or --inference_type")


def check_runs(content: bytes, inputs: np.ndarray, mode: Mode) -> TFLiteModel:
    """Loads the new model in the interpreter and runs it on a few clips (fingerprints, or
    clips of audio for a model that takes audio); UsageError if it cannot."""
    try:
        model = TFLiteModel(content=content)
        model.predict(inputs[:2])
    except UsageError as error:
        message = str(error)
        op = failing_op(message)
        reason = re.sub(r"^.*?the interpreter failed \(|^.*?can run \(", "", message)
        reason = re.split(r"\.?\s*Node number", reason)[0].rstrip(").")[:200]
        where = f"op {op} has" if op else "the model has"
        raise UsageError(f"the {mode.flags} model converted, but "
                         f"{where} no kernel for it in the TFLite interpreter ({reason})") from None
    return model
