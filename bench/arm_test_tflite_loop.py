"""Arm's way of evaluating a .tflite, reproduced for bench_tflite_eval.py (not part of the toolkit).

    python bench/arm_test_tflite_loop.py --tflite_path FILE --test_dir DIR [--window_stride_ms 20]

What Arm's tflu-kws-cortex-m/Training/test_tflite.py (ARM-software/ML-examples) does
for its test partition, here on an evaluation folder (one folder per label):
TensorFlow imported at the start; a tf.data pipeline that reads each WAV and runs
TensorFlow's decode_wav, audio_spectrogram and mfcc ops on it (with the zero time
shift and zero background of its test mode), mapped in parallel and batched by one;
the pipeline iterated once for the labels and once more for the predictions; a new
interpreter (TensorFlow's) built for every clip; accuracy and confusion matrix
printed at the end. Written here from that description, not copied.
"""
import argparse
import os

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import interpreter as interpreter_wrapper
from tensorflow.python.ops import gen_audio_ops as audio_ops

WORDS = ["_silence_", "_unknown_"] + "yes,no,up,down,left,right,on,off,stop,go".split(",")


def folder_items(test_dir: str):
    """(paths, label indices) of the clips of an evaluation folder, in folder order."""
    paths, labels = [], []
    for index, word in enumerate(WORDS):
        folder = os.path.join(test_dir, word)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            paths.append(os.path.join(folder, name))
            labels.append(index)
    return paths, labels


def clip_features(path, label, desired_samples: int, window: int, stride: int, coefficients: int):
    """One clip's MFCC through TensorFlow's ops, with the test mode's zero shift and noise."""
    audio, sample_rate = audio_ops.decode_wav(tf.io.read_file(path), desired_channels=1,
                                              desired_samples=desired_samples)
    shifted = tf.slice(tf.pad(audio, [[0, 0], [0, 0]]), [0, 0], [desired_samples, -1])
    silence = np.zeros([desired_samples, 1], dtype=np.float32)
    mixed = tf.clip_by_value(silence * tf.constant(0.0) + shifted, -1.0, 1.0)
    spectrogram = audio_ops.audio_spectrogram(mixed, window_size=window, stride=stride,
                                              magnitude_squared=True)
    mfcc = audio_ops.mfcc(spectrogram, sample_rate, dct_coefficient_count=coefficients)
    return tf.reshape(mfcc, [-1]), label


def predict(tflite_path: str, fingerprint) -> np.ndarray:
    """The scores of one fingerprint, from an interpreter built for it."""
    interpreter = interpreter_wrapper.Interpreter(model_path=tflite_path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], fingerprint)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite_path", required=True)
    parser.add_argument("--test_dir", required=True)
    parser.add_argument("--window_stride_ms", type=float, default=20.0)
    args = parser.parse_args()
    paths, labels = folder_items(args.test_dir)
    stride = int(16000 * args.window_stride_ms / 1000)
    test_data = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
        lambda path, label: clip_features(path, label, 16000, 640, stride, 10),
        num_parallel_calls=tf.data.experimental.AUTOTUNE).batch(1)
    expected = np.concatenate([label for _, label in test_data])
    predicted = [np.squeeze(tf.argmax(predict(args.tflite_path, mfcc), axis=1))
                 for mfcc, _ in test_data]
    print(tf.math.confusion_matrix(expected, predicted, num_classes=len(WORDS)).numpy())
    accuracy = float(np.mean(np.array(predicted) == expected))
    print(f"Test accuracy = {accuracy * 100:.2f}%(N={len(expected)})")


if __name__ == "__main__":
    main()
