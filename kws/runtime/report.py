"""Deployment report of a .tflite model: what a microcontroller needs to run it.

    report = tflite_report.analyze(open("dnn_quantized.tflite", "rb").read())
    print(tflite_report.format_report(report))

Everything is read from the flatbuffer itself (the TFLite schema that ships
with ai-edge-litert), so it works for any .tflite file, ours or Arm's:

- size: the file's bytes, and its gzip-compressed size;
- parameters: elements of the constant weight and bias tensors;
- multiply-accumulates of one inference, per weighted op (FULLY_CONNECTED,
  CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, BATCH_MATMUL,
  UNIDIRECTIONAL_SEQUENCE_LSTM / _RNN, SVDF); element-wise ops, activations
  and pooling count nothing: kws/macs.py's rule, which models.count_macs follows too;
- peak activation memory: the tensor arena that TensorFlow Lite Micro needs
  for the activations. Every non-constant tensor (model inputs and outputs,
  op outputs, op intermediates) lives from the op that writes it (the start,
  for model inputs) to the last op that reads it (the end, for model outputs;
  variable tensors such as LSTM states live throughout). `peak_activation_bytes`
  is the largest sum of tensors alive at once (a lower bound for any
  allocator); `arena_bytes` is the size of the plan that TFLM's greedy memory
  planner would make (largest tensor first, each at the lowest offset that does
  not overlap a tensor alive at the same time). Kernel scratch buffers and
  TFLM's own bookkeeping come on top;
- the ops, with how many times each occurs;
- the labels and settings the file carries as metadata (kws/runtime/metadata.py), if any.
"""
import collections
import dataclasses
import gzip
import math
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from kws import cli, macs
from kws.runtime import metadata as model_metadata

OP_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
            if not name.startswith("_")}
_TYPE_NAMES = {value: name for name, value in vars(schema.TensorType).items()
               if not name.startswith("_")}
# Bytes per element of each tensor type (sub-byte types counted as their packed size).
_TYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "STRING": 1,
               "BOOL": 1, "INT16": 2, "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8,
               "COMPLEX128": 16, "UINT64": 8, "RESOURCE": 0, "VARIANT": 0, "UINT32": 4,
               "UINT16": 2, "INT4": 0.5, "BFLOAT16": 2, "INT2": 0.25}
# Inputs that hold weights or biases, per op (indices into the op's inputs).
_WEIGHT_INPUTS = {
    "FULLY_CONNECTED": (1, 2), "CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2),
    "TRANSPOSE_CONV": (1, 3), "CONV_3D": (1, 2), "SVDF": (1, 2, 3),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": tuple(range(1, 18)) + tuple(range(20, 24)),
    "LSTM": tuple(range(1, 18)) + tuple(range(20, 24)),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 2, 3), "RNN": (1, 2, 3),
    "BATCH_MATMUL": (0, 1), "EMBEDDING_LOOKUP": (1,),
}
# The inputs holding the weights each weighted op multiplies by (biases left out), and the
# input at each of whose positions it applies them (None: at each position of its output).
_LSTM_MATRICES = (1, 2, 3, 4, 5, 6, 7, 8, 16)  # input, recurrent, projection weights
_MAC_INPUTS: Dict[str, Tuple[Tuple[int, ...], Optional[int]]] = {
    "FULLY_CONNECTED": ((1,), None), "CONV_2D": ((1,), None), "CONV_3D": ((1,), None),
    "DEPTHWISE_CONV_2D": ((1,), None), "TRANSPOSE_CONV": ((1,), 2),
    "BATCH_MATMUL": ((1,), None), "SVDF": ((1, 2), 0),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (_LSTM_MATRICES, 0), "LSTM": (_LSTM_MATRICES, 0),
    "UNIDIRECTIONAL_SEQUENCE_RNN": ((1, 2), 0), "RNN": ((1, 2), 0),
}
ARENA_ALIGNMENT = 16  # TFLM aligns every tensor in the arena to 16 bytes


@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    shape: Tuple[int, ...]
    type: str
    constant: bool
    variable: bool

    @property
    def elements(self) -> int:
        return int(math.prod(self.shape)) if self.shape else 1

    @property
    def bytes(self) -> int:
        return int(math.ceil(self.elements * _TYPE_BYTES.get(self.type, 4)))


@dataclasses.dataclass
class Op:
    name: str
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    intermediates: Tuple[int, ...]


class ModelError(ValueError):
    """The bytes are not a TFLite model this report can read."""


def _read_graph(content: bytes) -> Tuple[List[Tensor], List[Op], List[int], List[int]]:
    """Tensors, ops (in execution order), inputs and outputs of the main subgraph."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAs(content, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError("the model has no subgraph")
    graph = model.Subgraphs(0)
    has_data = []
    for b in range(model.BuffersLength()):
        buffer = model.Buffers(b)
        has_data.append(buffer.DataLength() > 0 or buffer.Offset() > 1)
    tensors = []
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        buffer = tensor.Buffer()
        tensors.append(Tensor(t, tensor.Name().decode(errors="replace"), shape,
                              _TYPE_NAMES.get(tensor.Type(), str(tensor.Type())),
                              0 < buffer < len(has_data) and has_data[buffer],
                              bool(tensor.IsVariable())))
    codes = []
    for c in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(c)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + (code.CustomCode() or b"?").decode(errors="replace"))
        else:
            codes.append(OP_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    ops = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)

        def indices(length, getter):
            return tuple(int(getter(i)) for i in range(length))

        ops.append(Op(codes[op.OpcodeIndex()], indices(op.InputsLength(), op.Inputs),
                      indices(op.OutputsLength(), op.Outputs),
                      indices(op.IntermediatesLength(), op.Intermediates)))
    for op in ops:
        # float16 (and other) weights dequantized once at load time are constants too
        if op.name == "DEQUANTIZE" and op.inputs and tensors[op.inputs[0]].constant:
            for index in op.outputs:
                tensors[index].constant = True
    inputs = [int(graph.Inputs(i)) for i in range(graph.InputsLength())]
    outputs = [int(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    return tensors, ops, inputs, outputs


def _op_macs(op: Op, tensors: Sequence[Tensor]) -> int:
    """Multiply-accumulates of one op, by the rule of kws/macs.py, from its tensor shapes."""
    if op.name not in _MAC_INPUTS:
        return 0
    weight_inputs, along_input = _MAC_INPUTS[op.name]
    weights = [tensors[op.inputs[position]].shape for position in weight_inputs
               if position < len(op.inputs) and op.inputs[position] >= 0]
    along = op.outputs[0] if along_input is None else op.inputs[along_input]
    if op.name == "BATCH_MATMUL":  # the second operand's matrix, at each row of the output
        weights = [weights[0][-2:]]
    return macs.weighted(weights, macs.positions(tensors[along].shape))


def _parameter_count(ops: Sequence[Op], tensors: Sequence[Tensor]) -> int:
    """Elements of constant tensors that ops use as weights or biases, each counted once."""
    weights = set()
    for op in ops:
        for position in _WEIGHT_INPUTS.get(op.name, ()):
            if position < len(op.inputs) and op.inputs[position] >= 0:
                tensor = tensors[op.inputs[position]]
                if tensor.constant:
                    weights.add(tensor.index)
        if op.name not in _WEIGHT_INPUTS and op.name != "DEQUANTIZE":
            # e.g. the constant operand of MUL or ADD
            for index in op.inputs:
                if index >= 0 and tensors[index].constant and tensors[index].type not in (
                        "INT32", "INT64", "BOOL", "STRING") and tensors[index].elements > 1:
                    weights.add(index)
    return sum(tensors[index].elements for index in weights)


def _lifetimes(ops: Sequence[Op], tensors: Sequence[Tensor], inputs: Sequence[int],
               outputs: Sequence[int]) -> Dict[int, Tuple[int, int]]:
    """tensor index -> (first op, last op) during which it occupies the arena."""
    last = max(len(ops) - 1, 0)
    first_use: Dict[int, int] = {}
    last_use: Dict[int, int] = {}
    for index in inputs:
        first_use[index] = 0
        last_use[index] = 0
    for position, op in enumerate(ops):
        for index in op.outputs + op.intermediates:
            if index >= 0 and not tensors[index].constant:
                first_use.setdefault(index, position)
                last_use[index] = max(last_use.get(index, position), position)
        for index in op.inputs + op.intermediates:
            if index >= 0 and not tensors[index].constant:
                first_use.setdefault(index, 0)  # read before written: alive from the start
                last_use[index] = max(last_use.get(index, position), position)
    for index in outputs:
        first_use.setdefault(index, 0)
        last_use[index] = last
    for tensor in tensors:
        if tensor.variable and not tensor.constant:
            first_use[tensor.index] = 0
            last_use[tensor.index] = last
    return {index: (first_use[index], last_use[index]) for index in first_use}


def peak_live_bytes(sizes: Dict[int, int], lifetimes: Dict[int, Tuple[int, int]],
                    op_count: int) -> int:
    """The largest sum of sizes of tensors alive during one op."""
    change = np.zeros(max(op_count, 1) + 1, dtype=np.int64)
    for index, (start, end) in lifetimes.items():
        change[start] += sizes[index]
        change[end + 1] -= sizes[index]
    return int(np.cumsum(change)[:-1].max()) if lifetimes else 0


def greedy_arena_bytes(sizes: Dict[int, int], lifetimes: Dict[int, Tuple[int, int]],
                       alignment: int = ARENA_ALIGNMENT) -> int:
    """The arena of TFLM's GreedyMemoryPlanner: largest first, lowest free offset."""
    def aligned(size: int) -> int:
        return (size + alignment - 1) // alignment * alignment

    placed: List[Tuple[int, int, int, int]] = []  # offset, size, start, end
    arena = 0
    order = sorted(sizes, key=lambda index: (-sizes[index], lifetimes[index][0], index))
    for index in order:
        size = aligned(sizes[index])
        start, end = lifetimes[index]
        overlapping = sorted((offset, used) for offset, used, s, e in placed
                             if s <= end and start <= e)
        offset = 0
        for other_offset, other_size in overlapping:
            if offset + size <= other_offset:
                break
            offset = max(offset, other_offset + other_size)
        placed.append((offset, size, start, end))
        arena = max(arena, offset + size)
    return arena


def analyze(content: bytes) -> dict:
    """The deployment report of a .tflite model (see the module docstring), as a dict."""
    tensors, ops, inputs, outputs = _read_graph(content)
    lifetimes = _lifetimes(ops, tensors, inputs, outputs)
    sizes = {index: tensors[index].bytes for index in lifetimes}
    op_counts = collections.Counter(op.name for op in ops)
    return {
        "file_bytes": len(content),
        "gzip_bytes": len(gzip.compress(content, compresslevel=9, mtime=0)),
        "parameters": _parameter_count(ops, tensors),
        "macs": int(sum(_op_macs(op, tensors) for op in ops)),
        "peak_activation_bytes": peak_live_bytes(sizes, lifetimes, len(ops)),
        "arena_bytes": greedy_arena_bytes(sizes, lifetimes),
        "op_count": len(ops),
        "ops": dict(sorted(op_counts.items(), key=lambda item: (-item[1], item[0]))),
        "input": [_describe(tensors[index]) for index in inputs],
        "output": [_describe(tensors[index]) for index in outputs],
        **_metadata(content),
    }


def _metadata(content: bytes) -> dict:
    """{"metadata": what the file carries}, {} without it, {"metadata_error": ...} when unreadable."""
    try:
        payload = model_metadata.read_metadata(content)
    except ValueError as error:
        return {"metadata_error": str(error)}
    return {} if payload is None else {"metadata": payload}


def _describe(tensor: Tensor) -> dict:
    return {"name": tensor.name, "shape": list(tensor.shape), "type": tensor.type.lower()}


def _kib(size: int) -> str:
    return f"{size:,} bytes ({size / 1024:.1f} KiB)"


def format_report(report: dict, title: Optional[str] = None) -> str:
    """The report as the lines printed by convert.py."""
    def tensors(described):
        return ", ".join(f"{t['type']}{t['shape']}" for t in described)

    lines = [f"Deployment report{' of ' + title if title else ''}:",
             f"  file size              {_kib(report['file_bytes'])}",
             f"  gzip size              {_kib(report['gzip_bytes'])}",
             f"  parameters             {report['parameters']:,}",
             f"  multiply-accumulates   {report['macs']:,} per inference",
             f"  peak activation memory {_kib(report['peak_activation_bytes'])} "
             f"(greedy arena plan: {report['arena_bytes']:,} bytes)",
             f"  input / output         {tensors(report['input'])} -> {tensors(report['output'])}"]
    if "tflm_arena_bytes" in report:
        persistent = report["tflm_arena_bytes"] - report["tflm_activation_bytes"]
        lines.append(f"  TFLM tensor arena      {report['tflm_arena_bytes']:,} bytes, measured by "
                     f"TensorFlow Lite for Microcontrollers: {report['tflm_activation_bytes']:,} "
                     f"activations + {persistent:,} kernel data and TFLM's structures")
    elif "tflm_error" in report:
        lines.append(f"  TFLM                   cannot run it: {report['tflm_error']}")
    if "metadata" in report or "metadata_error" in report:
        lines.append("  metadata               " + (model_metadata.summary(report["metadata"])
                                                     if "metadata" in report
                                                     else report["metadata_error"]))
    lines += [f"  ops ({report['op_count']})" + "".join(
                 f"\n    {name:<32}{count:>5}" for name, count in report["ops"].items())]
    return "\n".join(lines)


def c_array_sources(content: bytes, name: str, header_name: str) -> Tuple[str, str]:
    """A C source and header holding the model as a 16-byte aligned array, for TFLite Micro.

    The header declares `extern const unsigned char <name>[]` and
    `extern const unsigned int <name>_len`; the source defines them.
    """
    guard = "".join(c if c.isalnum() else "_" for c in header_name).upper() + "_"
    header = (f"// Generated by convert.py: a TensorFlow Lite model for TensorFlow Lite Micro.\n"
              f"#ifndef {guard}\n#define {guard}\n\n"
              f"extern const unsigned char {name}[];\n"
              f"extern const unsigned int {name}_len;\n\n#endif  // {guard}\n")
    data = np.frombuffer(content, dtype=np.uint8)
    rows = []
    for start in range(0, len(data), 12):
        rows.append("  " + ", ".join(f"0x{byte:02x}" for byte in data[start:start + 12]) + ",")
    source = (f"// Generated by convert.py: a TensorFlow Lite model for TensorFlow Lite Micro.\n"
              f"#include \"{header_name}\"\n\n"
              f"// The flatbuffer must be 16-byte aligned for TFLite Micro to read it in place.\n"
              f"alignas(16) const unsigned char {name}[] = {{\n" + "\n".join(rows) + "\n};\n"
              f"const unsigned int {name}_len = {len(content)};\n")
    return source, header


def write_c_array(tflite_path: str, content: bytes) -> Tuple[str, str]:
    """Writes <output>.cc and <output>.h next to the .tflite; returns their paths."""
    base = tflite_path[:-len(".tflite")] if tflite_path.endswith(".tflite") else tflite_path
    name = re.sub(r"\W", "_", os.path.basename(base))
    if not name or name[0].isdigit():
        name = "model_" + name
    name += "_tflite"
    source_path, header_path = base + ".cc", base + ".h"
    source, header = c_array_sources(content, name, os.path.basename(header_path))
    cli.write_atomically(header_path, header.encode())
    cli.write_atomically(source_path, source.encode())
    return source_path, header_path


def invoke_ms(content: bytes, runs: int) -> float:
    """Median milliseconds of one invoke in LiteRT (one thread, every input zero) over runs,
    after a warm-up of ten: the latency column of the benches."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(10):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
