"""The wake-word detector's model: a frozen backbone, a small head, one int8 .tflite.

The backbone is a keyword classifier that train.py trained (on words other than
the ones measured: --exclude_words), given as --backbone 'CHECKPOINT
--model_architecture A --model_size_info ... [fingerprint flags]' (the form of
train.py's --teacher). Its label count is read from the checkpoint. Its
embedding is the input of its last layer, the Dense softmax over its words
(every architecture of models.py ends in one).

The head reads the embedding: Dense(HEAD units, ReLU), dropout, Dense(3,
softmax) over _silence_, _unknown_ and the wake word. It is trained alone, on
embeddings computed once (the backbone is frozen: its batch norms in inference
mode): the examples' and a mining stream's windows' (embed_windows), weighted as
kws/wake_word/data.py's training_set says.

The detector is one functional model: the backbone's layers up to the embedding,
then the head's layers, so that convert.py's machinery (conversion.convert:
calibration, int8 quantization, the streaming form) makes one int8 .tflite of
both, streaming where the backbone's architecture allows (kws/export/stateful_model.py).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Sequence, Tuple

import numpy as np

from kws import features, tf_env
from kws.cli import UsageError
from kws.detection import detector as detection
from kws.export import calibration, conversion, quantization, stateful_model
from kws.models import registry
from kws.runtime import metadata as model_metadata
from kws.training import checkpoints, distillation

tf = tf_env.lazy_tensorflow()

DROPOUT = 0.2
PLACEHOLDER_LABELS = 2  # the label count a backbone is first built with, to find its last layer
MODE = quantization.MODES[(quantization.FULL_INTEGER, "int8")]  # int8 in and out, as on a device
PREDICT_BATCH = 256
WINDOW_BATCH = 1024  # stream windows embedded at once


@dataclasses.dataclass
class Backbone:
    """A trained keyword model, its fingerprint settings and where it came from."""

    model: tf.keras.Model
    settings: features.ModelSettings
    architecture: str
    size_info: Sequence[int]
    checkpoint: str

    @property
    def label_count(self) -> int:
        """The width of its softmax: the labels it was trained on."""
        return int(self.model.output_shape[-1])

    @property
    def embedding(self) -> tf.keras.Model:
        """The model up to its embedding: the input of its last layer."""
        return tf.keras.Model(self.model.inputs, self.model.layers[-1].input)


def label_count(checkpoint: str, model: tf.keras.Model) -> int:
    """The label count of the model in checkpoint: the width of its last weighted layer, read
    from the checkpoint (model: the same architecture, built with any label count)."""
    last = sum(1 for layer in model.layers if layer.weights) - 1
    pattern = re.compile(rf"^(model/)?layer_with_weights-{last}/bias/")
    shapes = [shape for name, shape in tf.train.list_variables(checkpoint) if pattern.match(name)]
    if not shapes:
        raise UsageError(f"--backbone {checkpoint}: no last layer of this architecture in the "
                         "checkpoint; give the --model_architecture it was trained with")
    return int(shapes[0][0])


def load_backbone(text: str, feature_defaults: features.ModelSettings) -> Backbone:
    """The backbone of a --backbone value, its weights loaded and frozen."""
    flags = distillation.teacher_flags(text, feature_defaults, "--backbone")
    settings = features.settings_from_flags(flags)
    built = registry.create_model(settings, flags.model_architecture, flags.model_size_info,
                                  label_count=PLACEHOLDER_LABELS)
    try:
        prefix = checkpoints.resolve_checkpoint(flags.checkpoint)
    except UsageError as error:
        raise UsageError(f"--backbone {flags.checkpoint}: {str(error).split(': ', 1)[-1]} (the "
                         "default backbone is trained and published by train_commands.txt, Part 7)")
    model = registry.create_model(settings, flags.model_architecture, flags.model_size_info,
                                  label_count=label_count(prefix, built))
    checkpoints.load_weights(model, prefix)
    model.trainable = False
    return Backbone(model, settings, flags.model_architecture, flags.model_size_info, prefix)


def head_model(embedding_size: int, units: int, seed: int) -> tf.keras.Model:
    """The head: embedding -> Dense(units, ReLU) -> dropout -> Dense(3, softmax)."""
    tf.keras.utils.set_random_seed(seed)
    embedding = tf.keras.Input(shape=(embedding_size,), name="embedding")
    x = tf.keras.layers.Dense(units, activation="relu")(embedding)
    x = tf.keras.layers.Dropout(DROPOUT)(x)
    scores = tf.keras.layers.Dense(3, activation="softmax")(x)
    return tf.keras.Model(embedding, scores, name="wake_word_head")


def detector(backbone: Backbone, head: tf.keras.Model) -> tf.keras.Model:
    """One model: the backbone's layers up to its embedding, then copies of the head's layers
    (each layer called once: kws/export/stateful_model.py reads every layer's one input)."""
    x = backbone.model.layers[-1].input
    for layer in head.layers[1:]:
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        copy.set_weights(layer.get_weights())
    return tf.keras.Model(backbone.model.inputs, x, name=f"{backbone.architecture}_wake_word")


def predict(model: tf.keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs in inference mode, in batches."""
    return np.concatenate([model(inputs[start:start + PREDICT_BATCH], training=False).numpy()
                           for start in range(0, len(inputs), PREDICT_BATCH)])


def train(model: tf.keras.Model, inputs: np.ndarray, labels: np.ndarray, weights: np.ndarray,
          steps: int, batch_size: int, learning_rate: float, seed: int,
          say: Callable[[str], None]) -> float:
    """Trains model on (inputs, labels), each example weighted by weights (kws/wake_word/data.py:
    label_weights, training_set), with Adam and a cosine decay of learning_rate; returns the
    final weighted training accuracy."""
    schedule = tf.keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(tf.keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  weighted_metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    report = max(1, steps // 5)
    for step in range(1, steps + 1):
        rows = rng.integers(0, len(labels), batch_size)
        loss, accuracy = model.train_on_batch(inputs[rows], labels[rows], sample_weight=weights[rows])
        if step % report == 0 or step == steps:
            say(f"  step {step}/{steps}: loss {loss:.4f}, weighted accuracy {accuracy:.4f}")
    return float(accuracy)


def embed_examples(backbone: Backbone, chunks: Iterable[Tuple[np.ndarray, np.ndarray]],
                   representative: int, say: Callable[[int], None]
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backbone's embeddings of chunks of (float clips, labels): (embeddings, labels, and
    int16 clips for calibration: up to representative of them, some of each chunk)."""
    fingerprinter, embedding = features.Fingerprinter(backbone.settings), backbone.embedding
    embeddings, labels, clips_kept = [], [], []
    for clips, chunk_labels in chunks:
        embeddings.append(predict(embedding, fingerprinter(clips)))
        labels.append(chunk_labels)
        clips_kept.append(features.clips_as(clips[:max(1, representative // 8)], np.int16))
        say(sum(map(len, labels)))
    return (np.concatenate(embeddings), np.concatenate(labels),
            np.concatenate(clips_kept)[:representative])


def embed_windows(backbone: Backbone, windows: detection.SlidingWindows,
                  say: Callable[[int], None]) -> np.ndarray:
    """The backbone's embedding of every window of a recording, WINDOW_BATCH at a time, as
    float16 (a long stream's windows are many: an hour every 30 ms is 120,000)."""
    embedding = backbone.embedding
    embed = tf.function(lambda inputs: embedding(inputs, training=False), input_signature=[
        tf.TensorSpec([None, backbone.settings.fingerprint_size], tf.float32)])
    parts = []
    for start in range(0, len(windows), WINDOW_BATCH):
        rows = np.arange(start, min(start + WINDOW_BATCH, len(windows)))
        parts.append(embed(windows.fingerprints(rows)).numpy().astype(np.float16))
        say(int(rows[-1]) + 1)
    return np.concatenate(parts)


def convert_detector(model: tf.keras.Model, settings: features.ModelSettings, architecture: str,
                     labels: Sequence[str], clips: np.ndarray) -> Tuple[bytes, str]:
    """The int8 .tflite of a detector (detector(), or one of that architecture trained whole),
    calibrated on clips, streaming where the architecture has a streaming form, with its labels
    and settings as metadata; and a line saying which form it is."""
    try:
        stream = stateful_model.streaming_model(model, settings, architecture)
        form = f"streaming ({stream.frames_per_call} frame(s) per call)"
    except UsageError as error:
        stream, form = None, f"not streaming: {error}"
    content, check_inputs = conversion.convert(model, settings, MODE, clips,
                                               calibration.DEFAULT_INPUT_CLIP_PERCENTILE, stream)
    content = model_metadata.add_metadata(content, model_metadata.describe(
        settings, labels, None, stream))
    quantization.check_runs(content, check_inputs, MODE)
    return content, form
