"""Streaming (stateful) models: a built keyword model turned into one that hears a stride at a time.

StreamingModel wraps a built, non-streaming functional model and shares its
layers and weights: one call takes the model's time stride of new MFCC frames
(`frames_per_call`, one frame for a model without time strides) and every
state as an explicit input, and returns the scores of the last clip-long
window and the new states (the form TensorFlow Lite for Microcontrollers
runs: no variables, constant shapes). The graph is walked once in topological
order, with one rule per kind of layer:
- per-frame layers (1x1 convolutions, Dense on the last axis, batch norm,
  activations, Add, Concatenate, Rescaling) apply as they are, to the new frames;
- a VALID convolution or pool along time keeps the input frames it will need
  again as a state, concatenates them with the new ones and applies itself;
- causal zero padding along time is the zero initial state of that buffer;
- a recurrent layer steps its cell once per frame, its h (and c) as states;
- Flatten and global pooling at the end keep the last clip-long window of
  their input frames;
- the Reshape of the fingerprint reshapes each call's frames.
Anything else (SAME padding along time, a Dense reading the whole fingerprint)
raises UsageError with one line naming the architecture, the layer and why.

Phase. A call ends on the last frame of a window, and the time strides make
each layer produce its outputs on the non-streaming model's grid, counted
back from the clip's last frame. A clip whose frame count is not a multiple of
frames_per_call is fed after lead_frames frames of anything (zeros). Models
whose output depends on the start of the clip (recurrent layers, causal
padding) see those lead frames, and the frames that a VALID convolution makes
from its zero initial state, as a stream's history: a call counter (one more
state) masks them, so that from a reset the final scores equal the
non-streaming model's on the clip; afterwards recurrent layers integrate the
whole stream, as a stateful model does.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kws import features, graph_features, tf_env
from kws.cli import UsageError
from kws.export import calibration, quantization, raw_audio

tf = tf_env.import_tensorflow()

MAX_REPRESENTATIVE_CALLS = 4000  # calibration tuples (frames and states) for int8


@dataclasses.dataclass(frozen=True)
class Timing:
    """A tensor's time axis: frames in the non-streaming model, frames per streaming call."""

    length: int
    per_call: int


Apply = Callable[[List[tf.Tensor], List[tf.Tensor], Optional[tf.Tensor]],
                 Tuple[tf.Tensor, List[tf.Tensor]]]


@dataclasses.dataclass
class _Step:
    """One layer of the streaming graph: reads tensors, keeps state_count states."""

    inputs: List[int]
    output: int
    apply: Apply
    state_count: int = 0


class _Planner:
    """Walks a functional model and chooses each layer's streaming rule."""

    def __init__(self, model: tf.keras.Model, settings: features.ModelSettings,
                 architecture: str, audio: bool):
        self.model, self.architecture = model, architecture
        self.clip_frames = settings.spectrogram_length
        self.stride = _time_stride(model)
        self.lead_frames = _lead_frames(settings, self.stride, audio)
        self.calls = (self.clip_frames + self.lead_frames) // self.stride
        self.steps: List[_Step] = []
        self.state_shapes: List[Tuple[int, ...]] = []
        self.counter_limit = 0  # calls after which every mask is open; 0: no counter
        self.timings: Dict[int, Optional[Timing]] = {}

    def refuse(self, layer: tf.keras.layers.Layer, why: str) -> UsageError:
        return UsageError(f"{self.architecture} cannot stream: its layer {layer.name} "
                          f"({type(layer).__name__}) {why}")

    def plan(self) -> None:
        fingerprint = self.model.inputs[0]
        self.timings[id(fingerprint)] = Timing(self.clip_frames, self.stride)
        for layer in self.model.layers:
            if isinstance(layer, tf.keras.layers.InputLayer):
                continue
            inputs = tf.nest.flatten(layer.input)
            timings = [self.timings[id(tensor)] for tensor in inputs]
            if any(tensor is fingerprint for tensor in inputs):
                timing, apply, states = self._fingerprint_reshape(layer)
            else:
                timing, apply, states = self._rule(layer, timings)
            self.timings[id(layer.output)] = timing
            self.steps.append(_Step([id(tensor) for tensor in inputs], id(layer.output),
                                    apply, len(states)))
            self.state_shapes.extend(states)
        if self.timings[id(self.model.output)] is not None:
            raise UsageError(f"{self.architecture} cannot stream: its output keeps a time axis")

    def lead(self, timing: Timing) -> int:
        """Frames of the tensor that a stream computes before the clip's first one (negative:
        frames of zero padding that the next buffer's zero initial state stands for)."""
        return timing.per_call * self.calls - timing.length

    def mask(self, lead: int, frames: int) -> Callable[[tf.Tensor], tf.Tensor]:
        """calls counter [batch, 1] -> [batch, frames]: 0 for the lead frames, 1 after."""
        self.counter_limit = max(self.counter_limit, math.ceil(lead / frames))
        offsets = tf.constant(2.0 * (np.arange(frames) - lead) + 1.0, tf.float32)[None]
        return lambda calls: tf.clip_by_value(calls * (2.0 * frames) + offsets, 0.0, 1.0)

    def _fingerprint_reshape(self, layer) -> tuple:
        """The Reshape of the flat fingerprint into frames; anything else reading it refuses."""
        target = tuple(layer.target_shape) if isinstance(layer, tf.keras.layers.Reshape) else ()
        if not target or target[0] != self.clip_frames:
            raise self.refuse(layer, "reads the whole flattened fingerprint at once, so every "
                                     "window is computed from scratch: there is no state to carry")
        shape = [-1, self.stride] + list(target[1:])
        return (Timing(self.clip_frames, self.stride),
                lambda x, s, c: (tf.reshape(x[0], shape), []), [])

    def _rule(self, layer, timings: Sequence[Optional[Timing]]) -> tuple:
        """(output timing, apply, state shapes) of a layer; timing None: no time axis."""
        layers = tf.keras.layers
        timing = timings[0]
        if any(t != timing for t in timings):
            raise self.refuse(layer, "merges tensors of different time axes")
        spans_time = _time_window(layer) and not _per_frame(layer)
        if timing is not None and self.lead(timing) < 0 and not spans_time:
            raise self.refuse(layer, "reads zero padding of time before a convolution does")
        if isinstance(layer, layers.Dropout):
            return timing, lambda x, s, c: (x[0], []), []
        if timing is None or _per_frame(layer):
            rank = len(layer.input_shape[0]) if isinstance(layer.input_shape, list) else 0
            if isinstance(layer, layers.Concatenate) and layer.axis in (1, 1 - rank):
                raise self.refuse(layer, "concatenates along time")
            return timing, _apply_layer(layer, len(timings) > 1), []
        if isinstance(layer, layers.Reshape):
            return self._reshape(layer, timing)
        if isinstance(layer, layers.ZeroPadding2D):
            return self._padding(layer, timing)
        if _end_window(layer):
            return self._window(layer, timing, timing.length, 1, None)
        if spans_time:
            return self._convolution(layer, timing)
        if isinstance(layer, layers.RNN):
            return self._recurrent(layer, timing)
        raise self.refuse(layer, "has no streaming rule")

    def _reshape(self, layer, timing: Timing) -> tuple:
        """A Reshape that keeps the time axis reshapes each call's frames."""
        target = tuple(layer.target_shape)
        if target[0] != timing.length:
            raise self.refuse(layer, "reshapes across the time axis")
        shape = [-1, timing.per_call] + list(target[1:])
        return timing, lambda x, s, c: (tf.reshape(x[0], shape), []), []

    def _padding(self, layer, timing: Timing) -> tuple:
        """Causal zero padding of time: the next buffer's zero initial state (the lead frames
        masked to zero); padding of frequency stays."""
        (before, after), frequency = layer.padding
        if after:
            raise self.refuse(layer, "pads the end of the time axis, which a stream has not heard")
        pad = tf.keras.layers.ZeroPadding2D(((0, 0), frequency))
        lead = self.lead(timing)
        mask = self.mask(lead, timing.per_call) if lead > 0 else None

        def apply(x, states, calls):
            frames = x[0] if mask is None else x[0] * mask(calls)[:, :, None, None]
            return pad(frames), []
        return Timing(timing.length + before, timing.per_call), apply, []

    def _convolution(self, layer, timing: Timing) -> tuple:
        """A VALID convolution or pool along time: a buffer of the frames it reads again,
        phased so that its outputs fall on the non-streaming grid (delay frames early)."""
        kernel = layer.pool_size[0] if hasattr(layer, "pool_size") else layer.kernel_size[0]
        dilation = getattr(layer, "dilation_rate", (1,))[0]
        span, stride = dilation * (kernel - 1) + 1, layer.strides[0]
        if layer.padding != "valid" and span > 1:
            raise self.refuse(layer, f"pads {layer.padding.upper()} along time with a kernel of "
                                     f"{span} frames, so its output frames need frames not heard "
                                     "yet; only VALID or causal padding along time streams")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise self.refuse(layer, "is channels_first")
        delay = (timing.length - span) % stride
        keep = span - stride + delay
        if keep < -self.lead(timing):
            raise self.refuse(layer, "pads more frames than its kernel reads")
        return self._window(layer, timing, keep + timing.per_call,
                            stride, (timing.length - span) // stride + 1)

    def _window(self, layer, timing: Timing, window: int, stride: int,
                length: Optional[int]) -> tuple:
        """The layer applied to the last window input frames; keeps window - per_call of them."""
        keep = window - timing.per_call
        states = [(keep,) + tuple(layer.input_shape[2:])] if keep > 0 else []

        def apply(x, state, calls):
            frames = tf.concat([state[0], x[0]], axis=1) if keep > 0 else x[0][:, -window:]
            return layer(frames, training=False), [frames[:, -keep:]] if keep > 0 else []
        out = None if length is None else Timing(length, timing.per_call // stride)
        return out, apply, states

    def _recurrent(self, layer, timing: Timing) -> tuple:
        """A recurrent layer steps its cell once per frame; the lead frames are masked."""
        if layer.go_backwards or layer.return_state or len(layer.input_shape) != 3:
            raise self.refuse(layer, "runs backwards, returns its state or is not a plain "
                                     "sequence layer")
        cell, frames, lead = layer.cell, timing.per_call, self.lead(timing)
        sizes = tf.nest.flatten(cell.state_size)
        mask = self.mask(lead, frames) if lead > 0 else None

        def apply(x, states, calls):
            states, outputs = list(states), []
            masks = mask(calls) if mask is not None else None
            for i in range(frames):
                _, new = cell(x[0][:, i], states, training=False)
                new = tf.nest.flatten(new)
                if masks is not None:
                    keep = masks[:, i:i + 1]
                    new = [keep * n + (1.0 - keep) * o for n, o in zip(new, states)]
                states = new
                outputs.append(new[0])  # the output of LSTM, GRU and projection cells
            if layer.return_sequences:
                return tf.stack(outputs, axis=1), states
            return outputs[-1], states
        out = timing if layer.return_sequences else None
        return out, apply, [(int(size),) for size in sizes]


class StreamingModel(tf.keras.Model):
    """The streaming form of a built model, sharing its layers and weights.

    Called on [frames [batch, frames_per_call, dct_coefficient_count] (with
    audio: samples [batch, samples_per_call], int16 PCM or float32 in [-1, 1]),
    *states], it returns
    [scores [batch, label_count], *new states]; start from initial_states().
    """

    def __init__(self, model: tf.keras.Model, model_settings: features.ModelSettings,
                 architecture: str, audio: Optional[str] = None):
        super().__init__(name=f"{architecture}_streaming")
        if audio and model_settings.window_size_samples < model_settings.window_stride_samples:
            raise UsageError("--streaming with --include_features needs --window_size_ms of at "
                             "least --window_stride_ms")
        planner = _Planner(model, model_settings, architecture, bool(audio))
        planner.plan()
        self.source = model  # tracked: the weights are the model's own
        self.model_settings, self.audio = model_settings, audio
        self.frames_per_call, self.lead_frames = planner.stride, planner.lead_frames
        self._steps, self._input_id, self._output_id = planner.steps, id(model.inputs[0]), id(model.output)
        self.counter_limit = planner.counter_limit
        shapes = list(planner.state_shapes)
        if audio:
            s = model_settings
            shapes = [(s.window_size_samples - s.window_stride_samples,)] + shapes
        if self.counter_limit:
            shapes.append((1,))
        self.state_shapes = shapes
        self.input_floor: Optional[float] = None  # with audio: calibration.input_floor
        self._traced = None

    @property
    def samples_per_call(self) -> int:
        return self.frames_per_call * self.model_settings.window_stride_samples

    def input_specs(self, batch: Optional[int] = 1) -> List[tf.TensorSpec]:
        """The call's inputs. The first one's name records the clip's frame count (clipN) and
        with audio input the window and stride in samples, for stream_runtime."""
        s = self.model_settings
        if self.audio:
            name = (f"audio_clip{s.spectrogram_length}_window{s.window_size_samples}"
                    f"_hop{s.window_stride_samples}")
            first = tf.TensorSpec([batch, self.samples_per_call], self.audio, name=name)
        else:
            first = tf.TensorSpec([batch, self.frames_per_call, s.dct_coefficient_count],
                                  tf.float32, name=f"frames_clip{s.spectrogram_length}")
        types = [self.audio] * bool(self.audio) + [tf.float32] * len(self.state_shapes)
        return [first] + [tf.TensorSpec([batch] + list(shape), dtype, name=f"state_{i}")
                          for i, (shape, dtype) in enumerate(zip(self.state_shapes, types))]

    def concrete_function(self, batch: Optional[int] = 1):
        """The call traced at a batch of batch (1: constant shapes, as TFLM runs it)."""
        function = tf.function(lambda *inputs: self(list(inputs), training=False),
                               autograph=False)
        return function.get_concrete_function(*self.input_specs(batch))

    def call(self, inputs: List[tf.Tensor], training: bool = False) -> List[tf.Tensor]:
        first, states = inputs[0], list(inputs[1:])
        new_states = []
        if self.audio:
            with tf.name_scope(raw_audio.FRONT_END):  # float32 in the int8 modes (kws/export/raw_audio.py)
                samples = tf.concat([states.pop(0), first], axis=1)
                new_states.append(samples[:, -self.state_shapes[0][0]:])
                scale = 1.0 / features.PCM_SCALE if first.dtype.is_integer else 1.0
                first = graph_features.graph_features(tf.cast(samples, tf.float32) * scale,
                                                self.model_settings)
                if self.input_floor is not None:  # the int8 input range (kws/export/raw_audio.py)
                    first = tf.maximum(first, self.input_floor)
        calls = states[-1] if self.counter_limit else None
        values = {self._input_id: first}
        position = 0
        for step in self._steps:
            output, kept = step.apply([values[i] for i in step.inputs],
                                      states[position:position + step.state_count], calls)
            position += step.state_count
            values[step.output] = output
            new_states.extend(kept)
        if self.counter_limit:
            new_states.append(tf.minimum(calls + 1.0, float(self.counter_limit)))
        return [values[self._output_id]] + new_states

    def initial_states(self, batch: int) -> List[np.ndarray]:
        return [np.zeros((batch,) + tuple(spec.shape[1:]), spec.dtype.as_numpy_dtype)
                for spec in self.input_specs()[1:]]

    def _step(self, inputs: List[np.ndarray]) -> List[np.ndarray]:
        if self._traced is None:
            self._traced = tf.function(lambda *tensors: self(list(tensors), training=False),
                                        autograph=False)
        return [tensor.numpy() for tensor in self._traced(*inputs)]

    def stream_clips(self, clips: np.ndarray) -> Tuple[np.ndarray, List[List[np.ndarray]]]:
        """Each clip fed from a reset, one call per stride: its final scores, and the inputs
        of every call (for calibration). clips: fingerprints [n, fingerprint_size], or with
        audio input clips [n, samples] of the input type."""
        s = self.model_settings
        if self.audio:
            rows = s.window_size_samples + (s.spectrogram_length - 1) * s.window_stride_samples
            clips = np.asarray(clips)[:, :rows]
        else:
            clips = np.asarray(clips, np.float32).reshape(len(clips), s.spectrogram_length, -1)
        per_call = self.samples_per_call if self.audio else self.frames_per_call
        lead = np.zeros((len(clips), -clips.shape[1] % per_call) + clips.shape[2:], clips.dtype)
        clips = np.concatenate([lead, clips], axis=1)
        states, calls = self.initial_states(len(clips)), []
        for start in range(0, clips.shape[1], per_call):
            inputs = [clips[:, start:start + per_call]] + states
            calls.append(inputs)
            scores, *states = self._step(inputs)
        return scores, calls

    def representative_inputs(self, fingerprints: np.ndarray, seed: int = 0
                              ) -> List[Dict[str, np.ndarray]]:
        """(frames, states) of calls made while streaming the calibration clips, for int8
        calibration: at most MAX_REPRESENTATIVE_CALLS, drawn evenly over clips and calls."""
        _, calls = self.stream_clips(fingerprints)
        rows = [(call, clip) for call in range(len(calls)) for clip in range(len(fingerprints))]
        chosen = np.random.default_rng(seed).permutation(len(rows))[:MAX_REPRESENTATIVE_CALLS]
        names = [spec.name for spec in self.input_specs()]
        return [{name: array[clip] for name, array in zip(names, calls[call])}
                for call, clip in (rows[i] for i in sorted(chosen))]


def streaming_model(model: tf.keras.Model, model_settings: features.ModelSettings,
                    architecture: str, audio: Optional[str] = None) -> StreamingModel:
    """The streaming form of model (audio: the input type of one taking audio, int16 or
    float32); UsageError in one line when it has none."""
    return StreamingModel(model, model_settings, architecture, audio)


def _apply_layer(layer, merge: bool) -> Apply:
    """The layer as it is, on the new frames (on the list of them for a merge)."""
    if merge:
        return lambda x, s, c: (layer(x, training=False), [])
    return lambda x, s, c: (layer(x[0], training=False), [])


def _per_frame(layer) -> bool:
    """Layers that act on each frame alone (whatever their time axis is)."""
    layers = tf.keras.layers
    return isinstance(layer, (layers.BatchNormalization, layers.Activation, layers.ReLU,
                              layers.Softmax, layers.Rescaling, layers.Add, layers.Subtract,
                              layers.Multiply, layers.Average, layers.Maximum, layers.Minimum,
                              layers.Concatenate, layers.LayerNormalization)) or (
        isinstance(layer, layers.Dense) and len(layer.input_shape) > 2) or (
        isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Conv1D))
        and layer.kernel_size[0] == 1 and layer.strides[0] == 1)


def _end_window(layer) -> bool:
    """Layers that read the whole remaining time axis at the end of the model."""
    layers = tf.keras.layers
    return isinstance(layer, (layers.Flatten, layers.GlobalAveragePooling2D,
                              layers.GlobalMaxPooling2D, layers.GlobalAveragePooling1D,
                              layers.GlobalMaxPooling1D))


def _time_window(layer) -> bool:
    """A convolution or pool whose kernel slides along time."""
    layers = tf.keras.layers
    return isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.MaxPooling2D,
                              layers.AveragePooling2D, layers.Conv1D, layers.MaxPooling1D,
                              layers.AveragePooling1D))


def _time_stride(model: tf.keras.Model) -> int:
    """The model's total stride along time: the product of the strides on the way to the output."""
    strides = {id(tensor): 1 for tensor in model.inputs}
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        stride = max(strides[id(tensor)] for tensor in tf.nest.flatten(layer.input))
        if _time_window(layer):
            stride *= layer.strides[0]
        strides[id(layer.output)] = stride
    return max(strides.values())


def _lead_frames(settings: features.ModelSettings, stride: int, audio: bool) -> int:
    """Frames computed before a clip's first one when the clip is fed from a reset, so that
    its last frame ends a call: with audio input, the frames the audio state's zeros start."""
    frames = settings.spectrogram_length
    if not audio:
        return -frames % stride
    hop = settings.window_stride_samples
    needed = settings.window_size_samples + (frames - 1) * hop  # the samples the clip's frames read
    return math.ceil(needed / (stride * hop)) * stride - frames



def add_streaming_flag(group) -> None:
    """convert.py's --streaming."""
    group.add_argument("--streaming", action="store_true",
                       help="Write the streaming (stateful) form: one stride of frames (with "
                            "--include_features, of audio) per call, every state an input and an "
                            "output, the scores of the last clip out; for the architectures whose "
                            "time axis allows it (README).")


def from_flags(args, model: tf.keras.Model, model_settings: features.ModelSettings
               ) -> Optional[StreamingModel]:
    """convert.py's streaming model (--streaming, with --include_features' input type), or None."""
    if not args.streaming:
        return None
    return streaming_model(model, model_settings, args.model_architecture, args.include_features)


def convert_streaming(streaming: StreamingModel, mode: quantization.Mode,
                  clips: Optional[np.ndarray], input_percentile: float
                  ) -> Tuple[bytes, np.ndarray]:
    """The .tflite of a streaming model in mode, and what to check it runs on: fingerprints,
    or with audio input clips. clips: the calibration clips, None if none."""
    s, audio = streaming.model_settings, streaming.audio
    if audio:
        raw_audio.check_mode(mode)
        if clips is None:
            return quantization.to_tflite(streaming, mode), np.zeros((2, s.desired_samples),
                                                                         audio)
        inputs = features.clips_as(clips, audio)
        streaming.input_floor = calibration.input_floor(features.Fingerprinter(s)(inputs),
                                                        input_percentile)
        return quantization.to_tflite(streaming, mode, inputs, 0, float_scope=raw_audio.FRONT_END), inputs
    if clips is None:
        return (quantization.to_tflite(streaming, mode),
                np.zeros((2, s.fingerprint_size), np.float32))
    fingerprints = features.Fingerprinter(s)(clips)
    return quantization.to_tflite(streaming, mode, fingerprints, input_percentile), fingerprints
