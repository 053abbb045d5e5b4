"""Raw-audio models (convert.py --include_features): the fingerprint computed inside the .tflite.

A raw-audio model takes one clip of audio, [1, desired_samples], as int16 PCM
(--include_features, or --include_features int16: what a microphone driver
hands over) or as float32 in [-1, 1] (--include_features float32), and
computes the fingerprint itself before the trained model: graph_features.graph_features
(Hann window, RFFT, magnitude, mel matmul, log, and for --preprocess mfcc a DCT
matmul), which TFLite converts to CAST, MUL, RESHAPE, GATHER, PAD, RFFT2D,
COMPLEX_ABS, STRIDED_SLICE, FULLY_CONNECTED, MAXIMUM and LOG. LiteRT's builtin kernels run
them all; TensorFlow Lite for Microcontrollers has no RFFT2D kernel, so it
cannot run such a model (the deployment report says so). Every mode of
convert.py holds it but int16x8 (no int16 kernels for the front end) and
dynamic range (its hybrid ops would quantize the spectrum at run time): both
are refused in one line (check_mode).

In the int8 modes the front end stays float32, and the int8 network starts
where the plain int8 model's does: at the fingerprint. Left to itself, the
quantizer would also quantize the audio, the spectrum and the log-mel to int8
(48 dB of dynamic range for the audio, one step for the quietest frames).
The calibration runs on the representative clips themselves. The plain
model's input range starts at the --input_clip_percentile floor of the
calibration fingerprints (calibration.input_floor); here that floor is an op,
tf.maximum(fingerprint, floor), at the end of the front end, so that the
quantized fingerprint has the same range and int8 step. The model's input
keeps its type; its output is what --inference_type says.
"""
import argparse
from typing import Optional, Tuple

import numpy as np

from kws import features, graph_features, tf_env
from kws.cli import UsageError
from kws.export import calibration, quantization
from kws.runtime.tflite_model import AUDIO_INPUT

tf = tf_env.import_tensorflow()

FRONT_END = "fingerprint"  # the layer computing the fingerprint: float32 in every mode
INPUT_TYPES = ("int16", "float32")


def add_include_features_flag(group: argparse._ArgumentGroup) -> None:
    """--include_features [int16|float32]."""
    group.add_argument("--include_features", nargs="?", const="int16", choices=INPUT_TYPES,
                       default=None,
                       help="Write a raw-audio model: its input is one clip of audio, int16 PCM "
                            "(the default) or float32 in [-1, 1], and it computes the fingerprint "
                            "itself (float32 also in the int8 modes). LiteRT runs it; TFLM has no "
                            "RFFT2D kernel.")


def check_mode(mode: quantization.Mode) -> None:
    """UsageError for a mode that cannot keep the front end float: int16x8, dynamic range."""
    if mode.int16_activations:
        raise UsageError(f"--include_features cannot be combined with {mode.flags}: int16x8 "
                         f"quantization has no kernels for the fingerprint's RFFT2D, COMPLEX_ABS "
                         f"and LOG; use --inference_type int8 or float32")
    if mode.quantization == quantization.DYNAMIC_RANGE:
        raise UsageError(f"--include_features cannot be combined with {mode.flags}: its hybrid "
                         f"FULLY_CONNECTED would quantize the spectrum to int8 at run time "
                         f"(scores 0.07 off); use the default full-integer int8, --quantize_mode "
                         f"float16 or --no-quantize")


class Fingerprint(tf.keras.layers.Layer):
    """Audio [1, desired_samples] (int16 PCM, or float32 in [-1, 1]) -> the fingerprint
    [1, fingerprint_size] of graph_features.graph_features, clipped below at floor when given."""

    def __init__(self, model_settings: features.ModelSettings, floor: Optional[float] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.model_settings = model_settings
        self.floor = floor

    def call(self, audio: tf.Tensor) -> tf.Tensor:
        samples = tf.cast(audio, tf.float32)
        if audio.dtype.is_integer:
            samples = samples * (1.0 / features.PCM_SCALE)
        settings = self.model_settings
        fingerprint = tf.reshape(graph_features.graph_features(samples, settings),
                                 [-1, settings.fingerprint_size])
        return fingerprint if self.floor is None else tf.maximum(fingerprint, self.floor)


def with_features(model: tf.keras.Model, model_settings: features.ModelSettings,
                  input_type: str, floor: Optional[float] = None) -> tf.keras.Model:
    """model behind the Fingerprint front end: one clip of input_type audio in, scores out."""
    audio = tf.keras.Input([model_settings.desired_samples], batch_size=1, dtype=input_type,
                           name=AUDIO_INPUT)
    fingerprint = Fingerprint(model_settings, floor, name=FRONT_END)(audio)
    return tf.keras.Model(audio, model(fingerprint, training=False), name="raw_audio")


def convert_raw_audio(model: tf.keras.Model, model_settings: features.ModelSettings,
                  mode: quantization.Mode, input_type: str, clips: Optional[np.ndarray],
                  input_percentile: float) -> Tuple[bytes, np.ndarray]:
    """The raw-audio .tflite of model in mode, and clips to check it runs on.

    clips: the representative clips of the calibrated modes (int16, or float in [-1, 1]).
    """
    check_mode(mode)
    if clips is None:
        return (quantization.to_tflite(with_features(model, model_settings, input_type), mode),
                np.zeros((2, model_settings.desired_samples), input_type))
    inputs = features.clips_as(clips, input_type)
    floor = calibration.input_floor(features.Fingerprinter(model_settings)(inputs),
                                    input_percentile)
    audio_model = with_features(model, model_settings, input_type, floor)
    return quantization.to_tflite(audio_model, mode, inputs, input_percentile=0,
                                      float_scope=FRONT_END), inputs
