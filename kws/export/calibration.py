"""Calibration of full-integer quantization: the representative clips and the ranges.

Full-integer quantization calibrates the activation ranges on a representative
data set: --representative_samples clips of the training partition of
--data_dir, augmented as train.py augments them, or the clips of
--representative_dir. Two adjustments keep int8 accuracy close to the float
model's (BENCHMARKS.md has the figures):
- the input range starts at a low percentile of the calibration fingerprints
  (input_floor) instead of at the log-mel floor of digital silence;
- the ranges of tensors read by TANH and LOGISTIC (the gates and cell state of
  unrolled LSTM/GRU cells) stop where the int8 outputs saturate, and the
  products and sums computed from them are narrowed to match
  (limit_saturating_ranges).
optimize.py's quantization-aware training starts from the same clips and floor.
"""
import argparse
import dataclasses
import glob
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from kws import cli, features
from kws.cli import UsageError
from kws.data import audio_io, speech_commands
from kws.runtime import report

DEFAULT_REPRESENTATIVE_SAMPLES = 500
DEFAULT_INPUT_CLIP_PERCENTILE = 1.0


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


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
    """The flags of add_calibration_flags: the calibration clips and the input range."""

    representative_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES
    representative_dir: Optional[str] = None
    input_clip_percentile: float = DEFAULT_INPUT_CLIP_PERCENTILE

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "CalibrationSettings":
        return cls(args.representative_samples, args.representative_dir, args.input_clip_percentile)


def check_input_clip_percentile(percentile: float) -> None:
    """UsageError unless --input_clip_percentile is in [0, 10]."""
    if not 0 <= percentile <= 10:
        raise UsageError(f"--input_clip_percentile must be between 0 and 10, got {percentile:g}")


def representative_fingerprints(settings: CalibrationSettings, data: speech_commands.DataSource
                                 ) -> Tuple[np.ndarray, str]:
    """The calibration fingerprints and a line saying where they come from."""
    clips, source = representative_clips(settings, data)
    return features.Fingerprinter(data.model_settings)(clips), source


def representative_clips(settings: CalibrationSettings, data: speech_commands.DataSource
                         ) -> Tuple[np.ndarray, str]:
    """The calibration clips (int16, or float32 in [-1, 1] when augmented) and a line saying
    where they come from; a raw-audio model (convert.py --include_features) calibrates on them."""
    rng = np.random.default_rng(data.settings.seed)
    if settings.representative_dir:
        return _folder_clips(settings.representative_dir, settings.representative_samples,
                             data.model_settings, rng)
    return _partition_clips(settings.representative_samples, data, rng)


def _folder_clips(folder: str, count: int, settings: features.ModelSettings,
                  rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """count clips drawn from the audio files under folder (--representative_dir)."""
    if not os.path.isdir(folder):
        raise UsageError(f"--representative_dir {folder} is not a folder")
    paths = sorted(path for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                   if os.path.isfile(path) and path.lower().endswith(audio_io.AUDIO_EXTENSIONS)
                   and speech_commands.BACKGROUND_NOISE_DIR_NAME not in path.split(os.sep))
    if not paths:
        raise UsageError(f"--representative_dir {folder} holds no audio files")
    chosen = [paths[i] for i in sorted(rng.permutation(len(paths))[:count])]
    clips, _, errors = audio_io.load_clips(chosen, settings.sample_rate, settings.desired_samples)
    audio_io.report_unreadable(errors)
    if not len(clips):
        raise UsageError(f"--representative_dir {folder}: no readable audio")
    return clips, f"{len(clips)} clips of --representative_dir {folder}"


def _partition_clips(count: int, data: speech_commands.DataSource, rng: np.random.Generator
                     ) -> Tuple[np.ndarray, str]:
    """count (--representative_samples) clips of the training partition, augmented as in
    training (of the validation partition when training is empty)."""
    data_dir = data.settings.data_dir
    if not data.usable():
        test_dir = data.settings.test_dir
        raise UsageError(
            f"full-integer quantization calibrates on representative clips, and --data_dir "
            f"{data_dir} holds no <word>/<clip> folders: pass --data_dir with training data "
            f"(Speech Commands, or a set made by synthesize_dataset.py; --data_url '' offline), or "
            f"--representative_dir FOLDER of clips like those the model will hear. The "
            f"evaluation folder --test_dir {test_dir} is not used for calibration unless you "
            f"name it as --representative_dir. (--quantize_mode dynamic_range or float16, and "
            f"--no-quantize, need no data.)")
    processor = data.processor
    partition = "training" if processor.set_size("training") else "validation"
    size = processor.set_size(partition)
    if not size:
        raise UsageError(f"--data_dir {data_dir}: the training and validation partitions are "
                         f"empty; no clips to calibrate quantization with")
    # Every clip of the partition once (in random order) before any is used again.
    order = np.concatenate([rng.permutation(size) for _ in range(-(-count // size))])[:count]
    rows = processor.rows[partition][order]
    labels = processor.labels[partition][order]
    clips = processor.audio[partition][rows]
    if partition == "training":
        clips = processor.augment(clips, labels, rng)  # time shift and background noise
    augmented = " (augmented as in training)" if partition == "training" else ""
    return clips, f"{count} clips of the {partition} partition of --data_dir {data_dir}{augmented}"


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
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    names = report.OP_NAMES
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
