"""A .tflite keyword-spotting model in the LiteRT interpreter: fingerprints in, float scores out.

Any model whose input is the MFCC fingerprint and whose output is one score
per label: ours or Arm's, float or quantized input and output (the scale and
zero point are read from the model), batch 1 or any batch. One interpreter
serves a whole run; the model runs on batches when its input can be resized
(checked against batch 1 on the first clips), one clip at a time otherwise.
When a model's input size contradicts the fingerprint flags, the error says
which settings would fit (fingerprint_hint).

A raw-audio model (convert.py --include_features) computes the fingerprint
itself: it is recognised by its input, named audio, one clip of audio
([1, desired_samples], int16 PCM or float32 in [-1, 1]) instead of a fingerprint,
when it is loaded, and is then fed clips (takes_audio).
"""
import argparse
import itertools
import os
import re
from typing import Optional, Sequence, Tuple

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from kws import cli, features
from kws.cli import UsageError
from kws.runtime import stateful_runner, tensors
from kws.runtime import tflm as tflm_runtime

DEFAULT_BATCH_SIZE = 256
LITERT = "litert"
LITERT_REFERENCE = "litert_reference"
TFLM = "tflm"
_CHECKED_CLIPS = 4  # clips run both batched and alone before trusting the batched model

# Settings tried, most common first, when a model's input size contradicts the flags.
_WINDOW_SIZES_MS = (30.0, 40.0, 20.0, 25.0, 32.0, 50.0, 64.0)
_WINDOW_STRIDES_MS = (10.0, 20.0, 40.0, 30.0, 15.0, 25.0, 32.0, 16.0, 8.0, 5.0, 50.0, 64.0)
_DCT_COUNTS = (10, 40, 13, 20, 30, 12, 16, 8, 32, 24, 15, 5) + tuple(range(1, 41))

AUDIO_INPUT = "audio"  # the input name of a raw-audio model (kws/export/raw_audio.py)
_AUDIO_INPUT = re.compile(rf"(^|_){AUDIO_INPUT}(:\d+)?$")  # as LiteRT names it: serving_default_audio:0


def _format_ms(value: float) -> str:
    return f"{value:g}"


def fingerprint_hint(input_size: int, model_settings: features.ModelSettings,
                     input_shape: Sequence[int] = ()) -> str:
    """Fingerprint flags whose fingerprint has input_size values, changing as few of those
    that made model_settings as possible.

    input_shape: the model's input shape; a [batch, frames, coefficients(, 1)]
    shape tells frames and coefficients apart, a flat one does not.
    """
    rate, duration = model_settings.sample_rate, model_settings.clip_duration_ms
    current = {"window_size_ms": float(model_settings.window_size_ms),
               "window_stride_ms": float(model_settings.window_stride_ms),
               "dct_coefficient_count": int(model_settings.dct_coefficient_count)}
    dims = [int(d) for d in list(input_shape)[1:]]
    while len(dims) > 2 and dims[-1] == 1:
        dims = dims[:-1]
    wanted_dct = dims[1] if len(dims) == 2 else None
    windows = (current["window_size_ms"],) + _WINDOW_SIZES_MS
    strides = (current["window_stride_ms"],) + _WINDOW_STRIDES_MS
    dcts = (current["dct_coefficient_count"],) + _DCT_COUNTS
    best: Optional[Tuple[tuple, dict]] = None
    for (wi, window), (si, stride), (di, dct) in itertools.product(
            enumerate(windows), enumerate(strides), enumerate(dcts)):
        if input_size % dct or (wanted_dct is not None and dct != wanted_dct):
            continue
        try:
            settings = features.prepare_model_settings(rate, duration, window, stride, dct)
        except UsageError:
            continue
        if settings.fingerprint_size != input_size:
            continue
        candidate = {"window_size_ms": window, "window_stride_ms": stride,
                     "dct_coefficient_count": dct}
        changed = sum(candidate[key] != current[key] for key in current)
        score = (di, changed, si, wi)  # common coefficient counts first, then fewest changes
        if best is None or score < best[0]:
            best = (score, candidate)
    if best is None:
        return (f"no window size, stride and coefficient count at --sample_rate {rate} "
                f"and --clip_duration_ms {duration} make {input_size} values")
    candidate = best[1]
    settings = features.prepare_model_settings(rate, duration, candidate["window_size_ms"],
                                             candidate["window_stride_ms"],
                                             candidate["dct_coefficient_count"])
    flags = " ".join(f"--{key} {_format_ms(value)}" for key, value in candidate.items()
                     if value != current[key])
    return (f"{input_size} = {settings.spectrogram_length} frames x "
            f"{settings.dct_coefficient_count} coefficients: try {flags} (the window size "
            f"cannot be read from the input size: use the one the model was trained with)")


class TFLiteModel:
    """A .tflite keyword-spotting model in one interpreter: fingerprints in, float scores out."""

    def __init__(self, path: Optional[str] = None, content: Optional[bytes] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, num_threads: Optional[int] = None,
                 runtime: str = LITERT):
        self.path = path or "<model>"
        if content is None and not os.path.isfile(path):
            raise UsageError(f"--tflite_path {path}: no such file")
        self.runtime = runtime
        if runtime == TFLM:
            if content is None:
                with open(path, "rb") as handle:
                    content = handle.read()
            self.interpreter = tflm_runtime.MicroInterpreter(content, f"--tflite_path {self.path}")
        else:
            self.interpreter = self._litert(path, content, num_threads,
                                            reference=runtime == LITERT_REFERENCE)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        self.stream: Optional[stateful_runner.StreamRunner] = None  # a streaming model's runner
        if stateful_runner.is_streaming(inputs):
            self.stream = stateful_runner.StreamRunner(self.interpreter, inputs, outputs,
                                                      f"--tflite_path {self.path}")
            inputs, outputs = [self.stream.first], [self.stream.scores]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UsageError(f"--tflite_path {self.path}: expected one input and one output, "
                             f"the model has {len(inputs)} and {len(outputs)}")
        self.input = inputs[0]
        self.output = outputs[0]
        self.input_shape = [int(d) for d in self.input["shape"]]
        self.takes_audio, self.input_size = self._input_kind()
        self.label_count = int(np.prod(self.output["shape"][1:])) if len(self.output["shape"]) > 1 else 1
        self.batch_size = max(1, batch_size)
        self.batched: Optional[bool] = None  # decided on the first predict
        self._allocated_batch = self.input_shape[0]

    def _input_kind(self) -> Tuple[bool, Optional[int]]:
        """Whether the model takes clips of audio (a raw-audio model: its input is named audio,
        as kws/export/raw_audio.py names it), and how many values per clip it takes: for a streaming model,
        the frames of the clip it was converted for, or None for one of audio (the clip's
        samples are the flags', check_settings)."""
        if self.stream is not None:
            if self.stream.audio:
                return True, None
            return False, self.stream.clip_frames * int(self.stream.first["shape"][2])
        takes_audio = bool(_AUDIO_INPUT.search(self.input.get("name", "")))
        return takes_audio, int(np.prod(self.input_shape[1:])) if len(self.input_shape) > 1 else 1

    def _litert(self, path: Optional[str], content: Optional[bytes], num_threads: Optional[int],
                reference: bool) -> Interpreter:
        """LiteRT's interpreter of the model (its reference kernels if asked), tensors allocated."""
        resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
        try:
            with cli.quiet_stderr():
                if content is not None:
                    interpreter = Interpreter(model_content=content, num_threads=num_threads,
                                              experimental_op_resolver_type=resolver)
                else:
                    interpreter = Interpreter(model_path=path, num_threads=num_threads,
                                              experimental_op_resolver_type=resolver)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise UsageError(f"--tflite_path {self.path}: not a model the TFLite interpreter can "
                             f"run ({cli.first_line(error)})")
        return interpreter

    @property
    def input_type(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def output_type(self) -> str:
        return np.dtype(self.output["dtype"]).name

    def check_settings(self, model_settings: features.ModelSettings,
                       words_list: Optional[Sequence[str]] = None,
                       labels_flag: str = "--wanted_words") -> None:
        """Raises UsageError when the flags' fingerprint or labels do not fit the model;
        recognises a raw-audio model by its input of desired_samples values."""
        if self.stream is not None:  # a streaming model: the clip it was converted for
            self.stream.check_settings(model_settings)
            if self.takes_audio:
                self.input_size = model_settings.desired_samples
        expected = model_settings.desired_samples if self.takes_audio else \
            model_settings.fingerprint_size
        if self.input_size != expected:
            s = model_settings
            raise UsageError(
                f"--tflite_path {self.path} takes {self.input_size} input values per clip "
                f"(shape {self.input_shape}), but these flags make fingerprints of "
                f"{s.spectrogram_length} frames x {s.dct_coefficient_count} coefficients = "
                f"{s.fingerprint_size} (--window_size_ms {_format_ms(s.window_size_ms)} "
                f"--window_stride_ms {_format_ms(s.window_stride_ms)} "
                f"--dct_coefficient_count {s.dct_coefficient_count}), nor clips of "
                f"{s.desired_samples} samples (a raw-audio model); "
                + fingerprint_hint(self.input_size, model_settings, self.input_shape))
        if words_list is not None and self.label_count != len(words_list):
            raise UsageError(
                f"--tflite_path {self.path} gives {self.label_count} scores, but the labels "
                f"are {len(words_list)} ({', '.join(words_list)}); set {labels_flag} to the "
                f"model's labels")

    def _resize(self, batch: int) -> None:
        if batch != self._allocated_batch:
            self._allocated_batch = None  # unknown until allocate_tensors succeeds
            self.interpreter.resize_tensor_input(self.input["index"],
                                                 [batch] + self.input_shape[1:])
            self.interpreter.allocate_tensors()
            self._allocated_batch = batch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._resize(len(batch))
        self.interpreter.set_tensor(self.input["index"],
                                    batch.reshape([len(batch)] + self.input_shape[1:]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).reshape(len(batch), -1).copy()

    def _decide_batching(self, inputs: np.ndarray) -> None:
        """Batches of batch_size when the resized model gives what batch 1 gives, else batch 1."""
        self.batched = False
        if self.batch_size == 1 or len(inputs) < 2:
            return
        sample = inputs[:_CHECKED_CLIPS]
        try:
            alone = np.concatenate([self._run(sample[i:i + 1]) for i in range(len(sample))])
            padded = np.concatenate([sample, np.repeat(sample[-1:], self.batch_size - len(sample), 0)])
            together = self._run(padded)[:len(sample)]
        except (ValueError, RuntimeError):
            self._resize(self.input_shape[0])
            return
        tolerance = 1e-3 * max(1.0, float(np.abs(alone.astype(np.float64)).max()))
        if np.dtype(alone.dtype).kind != "f":
            tolerance = 1  # one quantization step
        self.batched = bool(np.allclose(alone.astype(np.float64), together.astype(np.float64),
                                        rtol=0, atol=tolerance))
        if not self.batched:
            self._resize(self.input_shape[0])

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """The model as a scorer (streaming.Scorer): predict."""
        return self.predict(inputs)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Float scores [n, labels] of fingerprints [n, fingerprint size], or of clips
        [n, desired_samples] (int16, or float in [-1, 1]) when the model takes audio."""
        if self.stream is not None:  # each clip streamed from a reset, one call per stride
            return self.stream.clip_scores(inputs)
        inputs = np.asarray(inputs).reshape(len(inputs), -1)
        if inputs.shape[1] != self.input_size:
            what = "clips" if self.takes_audio else "fingerprints"
            raise UsageError(f"--tflite_path {self.path} takes {self.input_size} values per clip, "
                             f"got {what} of {inputs.shape[1]}")
        if self.takes_audio:
            inputs = features.clips_as(inputs, self.input["dtype"])
        else:
            inputs = tensors.quantize(inputs.astype(np.float32), self.input)
        if self.batched is None:
            self._decide_batching(inputs)
        scores = np.zeros((len(inputs), self.label_count), dtype=np.float32)
        step = self.batch_size if self.batched else 1
        try:
            for start in range(0, len(inputs), step):
                batch = inputs[start:start + step]
                if self.batched and len(batch) < step:  # keep one allocation: pad the last batch
                    batch = np.concatenate([batch, np.repeat(batch[-1:], step - len(batch), 0)])
                scores[start:start + step] = tensors.dequantize(
                    self._run(batch), self.output)[:len(inputs) - start]
        except (ValueError, RuntimeError) as error:
            raise UsageError(f"--tflite_path {self.path}: the interpreter failed "
                             f"({cli.first_line(error)})")
        return scores


def add_tflite_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--tflite_path", required=required, default=None,
                        help="The .tflite model to run.")
    parser.add_argument("--batch_size", type=cli.positive_int, default=DEFAULT_BATCH_SIZE,
                        help="Clips per interpreter call, where the model's input can be resized.")
    parser.add_argument("--runtime", choices=(LITERT, LITERT_REFERENCE, TFLM), default=LITERT,
                        help="The interpreter: LiteRT with its optimized kernels, LiteRT with its "
                             "reference kernels (what TFLM computes, much faster), or TensorFlow "
                             "Lite for Microcontrollers' own (the tflite-micro package: reference "
                             "kernels, batch 1, what a Cortex-M runs).")
    parser.add_argument("--force_flags", action="store_true",
                        help="Use the labels and fingerprint flags given even where the .tflite's "
                             "metadata (convert.py writes it) says otherwise.")
