"""A streaming .tflite (convert.py --streaming) in an interpreter: one call per stride, states kept.

A streaming model is recognised by its inputs: besides the new frames
([1, frames_per_call, coefficients], named frames_clipN, N the frames of the
clip it scores) or the new audio ([1, samples_per_call], audio_clipN), it
takes its states (state_0, state_1, ...) and returns the scores and the new
states (function outputs 0, 1, ...). StreamRunner keeps the states between
calls, as a device does, quantizing and dequantizing each tensor with its own
parameters; it scores clips (each from a reset, fed after the lead frames that
make its last frame end a call) and whole recordings (one call per stride).
No TensorFlow is needed.
"""
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np

from kws import features
from kws.cli import UsageError
from kws.runtime.tensors import dequantize, quantize

_FIRST_INPUT = re.compile(r"(frames|audio)_clip(\d+)")
_STATE_INPUT = re.compile(r"state_(\d+)")
_OUTPUT_INDEX = re.compile(r":(\d+)$")


def is_streaming(inputs: Sequence[dict]) -> bool:
    """Whether a model with these input details is a streaming model."""
    return any(_FIRST_INPUT.search(detail.get("name", "")) for detail in inputs) and len(inputs) > 1


class StreamRunner:
    """A streaming model in an interpreter (LiteRT's or tflm_runtime's), states kept in float."""

    def __init__(self, interpreter, inputs: Sequence[dict], outputs: Sequence[dict], name: str):
        self.interpreter, self.name = interpreter, name
        first = next(detail for detail in inputs if _FIRST_INPUT.search(detail["name"]))
        kind, clip = _FIRST_INPUT.search(first["name"]).groups()
        self.audio, self.clip_frames = kind == "audio", int(clip)
        states = [detail for detail in inputs if detail is not first]
        self.first = first
        self.states_in = sorted(states, key=lambda d: int(_STATE_INPUT.search(d["name"]).group(1)))
        ordered = sorted(outputs, key=lambda d: int(_OUTPUT_INDEX.search(d["name"]).group(1)))
        self.scores, self.states_out = ordered[0], ordered[1:]
        shapes = ([list(d["shape"]) for d in self.states_in], [list(d["shape"]) for d in self.states_out])
        if shapes[0] != shapes[1]:
            raise UsageError(f"{name}: a streaming model needs one new state per state input, "
                             f"the model has {len(self.states_in)} state inputs and "
                             f"{len(self.states_out)} other outputs")
        self.per_call = int(first["shape"][1])  # frames, or samples, per call
        self.label_count = int(np.prod(self.scores["shape"][1:]))
        self.states: List[np.ndarray] = []
        self.model_settings: Optional[features.ModelSettings] = None  # set by check_settings
        self.reset()

    def reset(self) -> None:
        self.states = [np.zeros(detail["shape"], np.float32) for detail in self.states_in]

    def check_settings(self, model_settings: features.ModelSettings) -> None:
        """UsageError when the fingerprint flags do not make the frames the model was made for."""
        s = self.model_settings = model_settings
        coefficients = None if self.audio else int(self.first["shape"][2])
        if s.spectrogram_length != self.clip_frames or coefficients not in (
                None, s.dct_coefficient_count):
            made = f"{self.clip_frames} frames" + (f" x {coefficients} coefficients"
                                                   if coefficients else "")
            raise UsageError(f"{self.name} is a streaming model of clips of {made}, but these "
                             f"flags make {s.spectrogram_length} frames x "
                             f"{s.dct_coefficient_count} coefficients; use the --window_size_ms, "
                             f"--window_stride_ms and --dct_coefficient_count it was converted with")

    def step(self, new: np.ndarray) -> np.ndarray:
        """One call: the new frames (or samples) in, the float scores out; the states move on."""
        interpreter = self.interpreter
        interpreter.set_tensor(self.first["index"],
                               quantize(np.asarray(new, np.float32).reshape(self.first["shape"]),
                                         self.first))
        for detail, state in zip(self.states_in, self.states):
            interpreter.set_tensor(detail["index"], quantize(state, detail))
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError) as error:
            raise UsageError(f"{self.name}: the interpreter failed ({error})".splitlines()[0])
        self.states = [dequantize(interpreter.get_tensor(detail["index"]), detail)
                       for detail in self.states_out]
        return dequantize(interpreter.get_tensor(self.scores["index"]), self.scores).reshape(-1)

    def stream(self, chunks: np.ndarray) -> np.ndarray:
        """Scores [calls, labels] of consecutive calls from a reset; chunks [calls, per_call(, C)]."""
        self.reset()
        return np.stack([self.step(chunk) for chunk in chunks]) if len(chunks) else np.zeros(
            (0, self.label_count), np.float32)

    def clip_scores(self, clips: np.ndarray) -> np.ndarray:
        """Scores [n, labels] of clips, each streamed from a reset and fed after the lead rows
        that make its last frame end a call: fingerprints [n, size], or with audio input
        clips [n, samples] (int16, or float in [-1, 1]; check_settings first)."""
        if self.audio:
            if self.model_settings is None:
                raise UsageError(f"{self.name}: a streaming raw-audio model needs the "
                                 "fingerprint flags")
            clips = features.clips_as(clips, self.first["dtype"])[
                :, :self._window_rows(self.model_settings)]
        else:
            clips = np.asarray(clips, np.float32).reshape(len(clips), self.clip_frames, -1)
        lead = -clips.shape[1] % self.per_call
        scores = np.zeros((len(clips), self.label_count), np.float32)
        for row, clip in enumerate(clips):
            chunks = np.concatenate([np.zeros((lead,) + clip.shape[1:], clip.dtype), clip])
            scores[row] = self.stream(chunks.reshape((-1, self.per_call) + chunks.shape[1:]))[-1]
        return scores

    def recording_scores(self, recording: np.ndarray, model_settings: features.ModelSettings
                         ) -> Tuple[np.ndarray, np.ndarray]:
        """Scores [windows, labels] of a recording streamed from a reset, one call per stride,
        and the start of each window in samples: the windows from the recording's first clip
        on. recording: its frames [n, coefficients] (audio input: its samples in [-1, 1])."""
        s = model_settings
        if self.audio:
            recording = features.clips_as(recording[None], self.first["dtype"])[0]
        calls = len(recording) // self.per_call
        scores = self.stream(np.asarray(recording[:calls * self.per_call]).reshape(
            (calls, self.per_call) + np.shape(recording)[1:]))
        unit = 1 if self.audio else s.window_stride_samples  # samples per input row
        window = self._window_rows(s)
        ends = (np.arange(calls) + 1) * self.per_call  # input rows heard after each call
        full = ends >= window
        return scores[full], (ends[full] - window) * unit

    def _window_rows(self, model_settings: features.ModelSettings) -> int:
        """Input rows (frames, or samples with audio input) that a clip's frames read."""
        s = model_settings
        if not self.audio:
            return s.spectrogram_length
        return s.window_size_samples + (s.spectrogram_length - 1) * s.window_stride_samples

