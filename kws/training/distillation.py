"""Knowledge distillation: a student trained on the labels and on its teachers' soft outputs.

    python train.py ... --teacher "Pretrained_models/DS_CNN/DS_CNN_M/ckpt --model_architecture ds_cnn
                                   --model_size_info 5 172 10 4 2 1 ..." "<another teacher>"
                    --distillation_weight 0.5 --distillation_temperature 2

Each value of --teacher is a checkpoint followed by the flags it was trained with: its
--model_architecture and --model_size_info, and its fingerprint flags where they
differ from the student's (--window_size_ms, --window_stride_ms,
--dct_coefficient_count, --preprocess...). Several teachers form an ensemble: their
probabilities are averaged. Every teacher is fed its own fingerprints, computed
from the same augmented audio as the student's (without SpecAugment's masks), and
runs in inference mode; its weights are not trained.

The loss of a batch is (Hinton et al., "Distilling the Knowledge in a Neural
Network", 2015)

    (1 - w) * cross_entropy(labels, student) + w * T^2 * KL(teacher_T || student_T)

where p_T is softmax(log(p) / T), w --distillation_weight and T
--distillation_temperature. The models end in a softmax, so log(p) stands for
their logits (they differ by a constant per example, which the softmax ignores).
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import List, Sequence

from kws import cli, features, tf_env
from kws.cli import UsageError
from kws.features import ModelSettings
from kws.models import registry
from kws.training import checkpoints

tf = tf_env.lazy_tensorflow()

LOG_FLOOR = 1e-12  # probabilities are floored here before the log


def add_distillation_flags(parser: argparse.ArgumentParser) -> None:
    """--teacher (one or more), --distillation_weight and --distillation_temperature."""
    group = parser.add_argument_group("knowledge distillation")
    group.add_argument("--teacher", nargs="+", default=[],
                       help="Teachers, each one quoted value 'CHECKPOINT --model_architecture A "
                            "--model_size_info ... [fingerprint flags where they differ from the "
                            "student's]'; several form an ensemble (their probabilities are averaged).")
    group.add_argument("--distillation_weight", type=cli.fraction, default=0.5,
                       help="Weight of the teachers' soft targets in the loss (the labels get the rest).")
    group.add_argument("--distillation_temperature", type=cli.positive_float, default=2.0,
                       help="Temperature that softens the teachers' and the student's outputs.")


@dataclasses.dataclass(frozen=True)
class Distillation:
    """The loss settings: weight of the soft targets and temperature."""
    weight: float
    temperature: float


@dataclasses.dataclass
class Teacher:
    """A trained model and the fingerprint settings it takes."""
    model: tf.keras.Model
    settings: ModelSettings
    checkpoint: str


def _teacher_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="--teacher", add_help=False, exit_on_error=False)
    parser.add_argument("checkpoint")
    registry.add_model_flags(parser)
    features.add_feature_flags(parser)
    return parser


def teacher_flags(text: str, student: ModelSettings, flag: str = "--teacher"
                  ) -> argparse.Namespace:
    """The flags of one --teacher value (or of another flag of that form: train_wake_word.py's
    --backbone); fingerprint flags it does not give are the student's (student's settings)."""
    parser = _teacher_parser()
    for dest in ("sample_rate", "clip_duration_ms", "window_size_ms", "window_stride_ms",
                 "dct_coefficient_count", "preprocess"):
        parser.set_defaults(**{dest: getattr(student, dest)})
    try:
        words = shlex.split(text)
        parsed = parser.parse_args(words)
    except (ValueError, argparse.ArgumentError, SystemExit) as error:
        raise UsageError(f"{flag} {text!r}: expected 'CHECKPOINT --model_architecture ARCH "
                         f"[--model_size_info ...] [fingerprint flags]' ({cli.first_line(error)})")
    if "--model_architecture" not in words:
        raise UsageError(f"{flag} {text!r}: give its --model_architecture (and --model_size_info)")
    return parsed


def load_teachers(texts: Sequence[str], student: ModelSettings, label_count: int) -> List[Teacher]:
    """The models of the --teacher values texts, built for label_count labels and loaded, each
    with its fingerprint settings (the student's where a value gives none)."""
    teachers = []
    for text in texts:
        flags = teacher_flags(text, student)
        settings = features.settings_from_flags(flags)
        model = registry.create_model(settings, flags.model_architecture, flags.model_size_info,
                                      label_count=label_count)
        prefix = checkpoints.load_weights(model, flags.checkpoint)
        model.trainable = False
        teachers.append(Teacher(model, settings, prefix))
    return teachers


def distillation_from_flags(args: argparse.Namespace) -> Distillation:
    return Distillation(args.distillation_weight, args.distillation_temperature)


def describe(teachers: Sequence[Teacher], distillation: Distillation) -> str:
    """One line naming the teachers and the loss settings."""
    names = ", ".join(teacher.checkpoint for teacher in teachers)
    return (f"Distilling from {len(teachers)} teacher(s) ({names}): weight "
            f"{distillation.weight:g}, temperature {distillation.temperature:g}")


def ensemble_probabilities(teachers: Sequence[Teacher], inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    """The teachers' averaged probabilities [batch, labels], each fed its own inputs."""
    outputs = [tf.cast(teacher.model(x, training=False), tf.float32)
               for teacher, x in zip(teachers, inputs)]
    return tf.stop_gradient(tf.add_n(outputs) / len(outputs))


def tempered_log_probabilities(probabilities: tf.Tensor, temperature: float) -> tf.Tensor:
    """log softmax(log(p) / T) of probabilities p [batch, labels]."""
    logits = tf.math.log(tf.maximum(probabilities, LOG_FLOOR)) / temperature
    return tf.nn.log_softmax(logits, axis=-1)


def soft_target_losses(student: tf.Tensor, teacher: tf.Tensor, temperature: float) -> tf.Tensor:
    """T^2 * KL(teacher_T || student_T) of each example [batch], from probabilities."""
    teacher_log = tempered_log_probabilities(teacher, temperature)
    student_log = tempered_log_probabilities(student, temperature)
    return temperature ** 2 * tf.reduce_sum(tf.exp(teacher_log) * (teacher_log - student_log), axis=-1)


def losses(labels: tf.Tensor, student: tf.Tensor, teacher: tf.Tensor,
           distillation: Distillation) -> tf.Tensor:
    """Each example's loss [batch]: the labels' cross entropy and the soft targets', blended."""
    hard = tf.keras.losses.sparse_categorical_crossentropy(labels, student)
    soft = soft_target_losses(student, teacher, distillation.temperature)
    return (1.0 - distillation.weight) * hard + distillation.weight * soft
