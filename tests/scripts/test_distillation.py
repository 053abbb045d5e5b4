"""Tests of kws/training/distillation.py and its path through the data and the trainer: the loss, a student
that learns its teacher's soft targets, and teachers fed their own fingerprints."""

import numpy as np
import pytest

import train
from kws import cli, features, graph_features, tf_env
from kws.data import augmentation
from kws.models import registry
from kws.training import checkpoints, distillation

from conftest import TINY_FEATURE_FLAGS, make_speech_commands, processor

tf = tf_env.import_tensorflow()


def test_soft_target_loss_is_zero_for_the_teacher_itself_and_grows_with_the_gap():
    teacher = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    same = distillation.soft_target_losses(teacher, teacher, 2.0).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    near = distillation.soft_target_losses(tf.constant([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]]), teacher, 2.0)
    far = distillation.soft_target_losses(tf.constant([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]]), teacher, 2.0)
    assert np.all(far.numpy() > near.numpy()) and np.all(near.numpy() > 0)
    blended = distillation.losses(tf.constant([0, 2]), teacher, teacher, distillation.Distillation(1.0, 2.0))
    np.testing.assert_allclose(blended.numpy(), 0.0, atol=1e-6)


def test_teacher_flags_take_the_students_fingerprint_flags_unless_given():
    student = features.settings_from_flags(train.build_parser().parse_args(
        ["--dct_coefficient_count", "10", "--window_stride_ms", "20"]))
    flags = distillation.teacher_flags("ckpt --model_architecture dnn --model_size_info 8 8 "
                                       "--window_stride_ms 40", student)
    assert (flags.checkpoint, flags.model_architecture, flags.model_size_info) == ("ckpt", "dnn", [8, 8])
    assert (flags.dct_coefficient_count, flags.window_stride_ms) == (10, 40)
    for bad in ("", "ckpt", "ckpt --model_architecture nope", "ckpt --window_size_ms x"):
        with pytest.raises(cli.UsageError, match="--teacher"):
            distillation.teacher_flags(bad, student)


def test_a_teacher_with_other_coefficients_shares_the_students_spectra(data_dir):
    audio = processor(data_dir)
    teacher = features.prepare_model_settings(16000, 1000, 40, 20, 13)
    (x_student, x_teacher), labels = next(iter(audio.training_dataset(8, teachers=[teacher])))
    assert x_teacher.shape == (8, teacher.fingerprint_size)
    # the first 10 of 13 MFCCs are the 10 MFCCs: the same audio, the teacher's own features
    np.testing.assert_allclose(x_teacher.numpy().reshape(8, -1, 13)[..., :10],
                               x_student.numpy().reshape(8, -1, 10), atol=1e-3)
    alone, alone_labels = next(iter(audio.training_dataset(8)))
    np.testing.assert_array_equal(alone.numpy(), x_student.numpy())
    np.testing.assert_array_equal(alone_labels.numpy(), labels.numpy())


def test_a_teacher_framed_like_the_student_shares_its_fingerprints_but_not_its_masks(data_dir):
    plain = processor(data_dir)
    (x_student, x_teacher), _ = next(iter(plain.training_dataset(8, teachers=[plain.model_settings])))
    np.testing.assert_array_equal(x_teacher.numpy(), x_student.numpy())
    masked = processor(data_dir, augmentation=augmentation.Augmentation(
        augmentation_domain="spectrum", time_masks=2, time_mask_max=10))
    (x_student, x_teacher), _ = next(iter(masked.training_dataset(8, teachers=[masked.model_settings])))
    assert np.sum(x_student.numpy() == 0) > np.sum(x_teacher.numpy() == 0)
    np.testing.assert_array_equal(x_student.numpy()[x_student.numpy() != 0],
                                  x_teacher.numpy()[x_student.numpy() != 0])


def test_a_teacher_with_other_frames_gets_its_own_fingerprints_of_the_same_audio(data_dir, capsys):
    audio = processor(data_dir, seed=3)
    teacher = features.prepare_model_settings(16000, 1000, 40, 40, 10)
    (x_student, x_teacher), _ = next(iter(audio.training_dataset(8, start_step=2, teachers=[teacher])))
    assert "a teacher frames the audio differently" in capsys.readouterr().out
    clips, _ = next(audio.training_batches(8, start_step=2))
    expected = graph_features.graph_fingerprints(tf.constant(clips), teacher).numpy()
    np.testing.assert_allclose(x_teacher.numpy(), expected, atol=1e-4)
    assert x_student.shape == (8, audio.model_settings.fingerprint_size)
    forced = processor(data_dir, augmentation=augmentation.Augmentation(augmentation_domain="spectrum"))
    with pytest.raises(cli.UsageError, match="frames the audio differently"):
        forced.training_dataset(8, teachers=[teacher])


def test_a_student_learns_its_teachers_soft_targets(tmp_path):
    data = make_speech_commands(tmp_path / "data", background=False)
    flags = ["--data_url", "", "--data_dir", str(data), "--wanted_words", "yes,no,up", *TINY_FEATURE_FLAGS]
    settings_args = train.build_parser().parse_args(flags)
    settings = features.settings_from_flags(settings_args)
    tf.keras.utils.set_random_seed(7)
    teacher = registry.create_model(settings, "dnn", [16], label_count=5)
    for weight in teacher.trainable_weights:  # a confident mapping that has nothing to do with the labels
        weight.assign(weight * 4.0)
    prefix = str(tmp_path / "teacher" / "dnn.ckpt")
    checkpoints.save_weights_atomically(teacher, prefix)
    args = train.build_parser().parse_args(flags + [
        "--model_architecture", "dnn", "--model_size_info", "32", "32",
        "--teacher", f"{prefix} --model_architecture dnn --model_size_info 16",
        "--distillation_weight", "1.0", "--distillation_temperature", "1",
        "--time_shift_ms", "0", "--background_frequency", "0", "--silence_percentage", "0",
        "--unknown_percentage", "0", "--how_many_training_steps", "400", "--learning_rate", "0.003",
        "--batch_size", "16", "--eval_step_interval", "400", "--train_dir", str(tmp_path / "train"),
        "--summaries_dir", ""])
    train.main(args)
    student = registry.create_model(settings, "dnn", [32, 32], label_count=5)
    checkpoints.load_weights(student, str(tmp_path / "train" / "best"))
    audio = processor(data, model_settings=settings, silence_percentage=0, unknown_percentage=0)
    inputs, labels = audio.fingerprints("training")
    taught = np.argmax(teacher.predict(inputs, verbose=0), axis=1)
    learned = np.argmax(student.predict(inputs, verbose=0), axis=1)
    assert np.mean(taught == labels) < 0.7  # the teacher's answers are not the labels ...
    assert np.mean(learned == taught) > 0.9  # ... and the student gives the teacher's answers
