"""TensorFlow Lite for Microcontrollers: a .tflite run the way a Cortex-M runs it.

The `tflite-micro` package is TFLM's own interpreter with its reference
kernels. MicroInterpreter gives it the few methods of LiteRT's Interpreter
that tflite_model.TFLiteModel uses, so one evaluation path serves both
runtimes; arena() measures the tensor arena TFLM allocates for a model.
TFLM reports what it cannot run (an op without a kernel, a shape it does not
support) only on stderr, from C++: it is captured here and turned into one
line naming the op.
"""
import contextlib
import os
import re
import tempfile
from typing import Dict, Iterator, List, Optional

import numpy as np

from kws.cli import UsageError

INSTALL_HINT = "pip install tflite-micro (the version in requirements.txt)"


def available() -> bool:
    """Whether the tflite-micro package can be imported on this platform."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return False
    return hasattr(runtime, "Interpreter")


class CannotRun(UsageError):
    """TFLM cannot load or run a model; reason names the op where TFLM says which."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: TensorFlow Lite for Microcontrollers cannot run this model "
                         f"({reason})")
        self.reason = reason


class _Captured:
    text = ""


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    """What C++ code writes to stderr (file descriptor 2) inside the block, as text."""
    captured = _Captured()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


def _reason(log: str) -> str:
    """The failing op and TFLM's own words, from its stderr log."""
    node = re.search(r"Node (\w+) \(number \d+\) failed to (\w+)", log)
    kernel = next((line.strip() for line in log.splitlines()
                   if line.strip() and "failed to" not in line and "Arena" not in line), "")
    if node:
        return f"op {node.group(1)} failed to {node.group(2)}" + (f": {kernel}" if kernel else "")
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", log)
    if missing:
        return f"op {missing.group(1)} has no TFLM kernel"
    return kernel or "TFLM could not allocate or run the model"


class MicroInterpreter:
    """TFLM's interpreter behind the subset of LiteRT's Interpreter API that TFLiteModel uses.

    Its input cannot be resized (resize_tensor_input raises ValueError), so TFLiteModel runs
    one clip at a time.
    """

    def __init__(self, content: bytes, name: str, arena_size: Optional[int] = None):
        if not available():
            raise UsageError(f"--runtime tflm needs the tflite-micro package, which is not "
                             f"installed or has no build for this platform: {INSTALL_HINT}")
        from tflite_micro.python.tflite_micro import runtime

        with _captured_stderr() as log:
            try:
                self._interpreter = runtime.Interpreter.from_bytes(content, arena_size=arena_size)
            except (RuntimeError, ValueError):
                self._interpreter = None
        if self._interpreter is None:
            raise CannotRun(name, _reason(log.text))
        self.name = name
        self._names = _io_names(content)

    def _details(self, details: dict, index: int, kind: str) -> dict:
        quantization = details["quantization_parameters"]
        scales, zero_points = quantization["scales"], quantization["zero_points"]
        return {"index": index, "name": self._names[kind][index],
                "shape": np.array(details["shape"]), "dtype": details["dtype"],
                "quantization": (float(scales[0]) if len(scales) else 0.0,
                                 int(zero_points[0]) if len(zero_points) else 0)}

    def get_input_details(self) -> List[dict]:
        return [self._details(self._interpreter.get_input_details(i), i, "inputs")
                for i in range(len(self._names["inputs"]))]

    def get_output_details(self) -> List[dict]:
        return [self._details(self._interpreter.get_output_details(i), i, "outputs")
                for i in range(len(self._names["outputs"]))]

    def allocate_tensors(self) -> None:
        """TFLM allocates when the model is loaded."""

    def resize_tensor_input(self, index: int, shape) -> None:
        """Only to the model's own shape: TFLM runs the batch the model was converted with."""
        if list(shape) != [int(d) for d in self.get_input_details()[index]["shape"]]:
            raise ValueError("TFLM runs a model at the batch it was converted with")

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self._interpreter.set_input(value, index)

    def invoke(self) -> None:
        with _captured_stderr() as log:
            try:
                self._interpreter.invoke()
                failed = None
            except (RuntimeError, ValueError):
                failed = True
        if failed:
            raise CannotRun(self.name, _reason(log.text))

    def get_tensor(self, index: int) -> np.ndarray:
        return self._interpreter.get_output(index)

    def arena(self) -> Dict[str, int]:
        """The arena TFLM's recording allocator used, after one invoke(): total, head (the
        activations, planned) and tail (kernels' persistent data, tensor and node structs)."""
        with _captured_stderr() as log:
            self._interpreter.print_allocations()
        sizes = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", log.text))
        if set(sizes) != {"total", "head", "tail"}:
            raise RuntimeError(f"TFLM printed no arena sizes ({log.text.strip()[:200]})")
        return {part: int(size) for part, size in sizes.items()}


def _io_names(content: bytes) -> Dict[str, List[str]]:
    """The names of the main subgraph's input and output tensors, in the interpreter's order."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    return {"inputs": [graph.Tensors(graph.Inputs(i)).Name().decode()
                       for i in range(graph.InputsLength())],
            "outputs": [graph.Tensors(graph.Outputs(i)).Name().decode()
                        for i in range(graph.OutputsLength())]}


def arena(content: bytes, name: str = "<model>") -> Dict[str, int]:
    """The tensor arena TFLM needs for a model (MicroInterpreter.arena), measured by loading it
    and running it once on zeros; CannotRun naming the op when TFLM cannot run it."""
    interpreter = MicroInterpreter(content, name)
    for details in interpreter.get_input_details():  # a streaming model has its states too
        interpreter.set_tensor(details["index"], np.zeros(details["shape"], dtype=details["dtype"]))
    interpreter.invoke()
    return interpreter.arena()


def report_figures(content: bytes, name: str) -> dict:
    """For the deployment report: tflm_arena_bytes (what a device allocates) and
    tflm_activation_bytes (its activation part), or tflm_error saying why there are none
    (the op TFLM cannot run, or no tflite-micro on this platform)."""
    if not available():
        return {"tflm_error": f"tflite-micro is not installed ({INSTALL_HINT})"}
    try:
        sizes = arena(content, name)
        return {"tflm_arena_bytes": sizes["total"], "tflm_activation_bytes": sizes["head"]}
    except CannotRun as error:
        return {"tflm_error": error.reason}
