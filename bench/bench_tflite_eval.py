"""Clips per second of test_tflite.py's evaluation against a naive loop.

    python bench/bench_tflite_eval.py [--naive_clips 300]

test_tflite's path: the clips read in parallel, fingerprinted in batches,
and one interpreter running batches of fingerprints. The naive loop, as
often written: a batch-1 tf.data pipeline (read, decode_wav,
audio_spectrogram, mfcc) and a new interpreter for every clip; it runs on
--naive_clips clips only. Both run Arm's DS_CNN_S int8 model on the dev folder
of ../shared (a tiny converted dnn on generated clips where ../shared is absent),
and both must give the same predictions.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
import features  # noqa: E402
import quantization  # noqa: E402
import tflite_model  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

tf = cli.import_tensorflow()

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
DEV_SET = os.path.join(SHARED, "data", "speech_commands_test_v0.02_dev")
ARM_DS_CNN_S = os.path.join(SHARED, "reference", "arm_pretrained", "DS_CNN", "DS_CNN_S",
                            "ds_cnn_s_quantized.tflite")


def generated_setup(folder: str):
    """A tiny converted dnn and 400 generated clips in label folders (no ../shared)."""
    import wave

    def write_wav(path, samples):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with wave.open(path, "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes(np.asarray(samples, dtype="<i2").tobytes())

    settings = features.prepare_model_settings(12, 16000, 1000, 40, 20, 10)
    words = input_data.prepare_words_list(input_data.DEFAULT_WANTED_WORDS.split(","))
    rng = np.random.default_rng(0)
    for n in range(400):
        write_wav(os.path.join(folder, words[n % len(words)], f"clip{n}.wav"),
                  rng.integers(-2000, 2000, 16000))
    model = models.create_model(settings, "dnn", (64, 64))
    content = quantization.convert_model(model, quantization.MODES[(quantization.FULL_INTEGER, "float32")],
                                         rng.normal(0, 10, (50, settings.fingerprint_size)), 1.0)
    path = os.path.join(folder, "dnn.tflite")
    cli.write_atomically(path, content)
    return path, folder, settings


def naive_predictions(tflite_path: str, paths, settings: features.ModelSettings) -> np.ndarray:
    """A new interpreter per clip, fed by a batch-1 tf.data pipeline of TF's audio ops."""
    def features(path):
        audio, _ = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1,
                                       desired_samples=settings.desired_samples)
        spectrogram = tf.raw_ops.AudioSpectrogram(
            input=audio, window_size=settings.window_size_samples,
            stride=settings.window_stride_samples, magnitude_squared=True)
        mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=settings.sample_rate,
                               dct_coefficient_count=settings.dct_coefficient_count)
        return tf.reshape(mfcc, [1, -1])

    dataset = tf.data.Dataset.from_tensor_slices(list(paths)).map(features)
    predictions = []
    for fingerprint in dataset:
        interpreter = Interpreter(model_path=tflite_path)
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()[0]
        output = interpreter.get_output_details()[0]
        interpreter.set_tensor(inputs["index"], fingerprint.numpy().astype(np.float32))
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(output["index"]))))
    return np.array(predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive_clips", type=int, default=300)
    args = parser.parse_args()
    temporary = tempfile.TemporaryDirectory()
    if os.path.isdir(DEV_SET) and os.path.isfile(ARM_DS_CNN_S):
        tflite_path, test_dir = ARM_DS_CNN_S, DEV_SET
        settings = features.prepare_model_settings(12, 16000, 1000, 40, 20, 10)
        print(f"Arm's DS_CNN_S int8 on {DEV_SET}")
    else:
        tflite_path, test_dir, settings = generated_setup(temporary.name)
        print(f"{SHARED} absent: a tiny dnn on 400 generated clips")
    words = input_data.prepare_words_list(input_data.DEFAULT_WANTED_WORDS.split(","))

    start = time.perf_counter()
    clips, labels, paths = input_data.load_evaluation_folder(test_dir, words, settings)
    fingerprints = features.Fingerprinter(settings).numpy(clips)
    model = tflite_model.TFLiteModel(tflite_path)
    fast = np.argmax(model.predict(fingerprints), axis=1)
    fast_seconds = time.perf_counter() - start
    fast_rate = len(clips) / fast_seconds
    print(f"test_tflite path: {len(clips)} clips in {fast_seconds:.2f} s = {fast_rate:,.0f} clips/s "
          f"(accuracy {np.mean(fast == labels):.4f}; "
          f"{'batches of %d' % model.batch_size if model.batched else 'one clip at a time'})")

    order = np.random.default_rng(0).permutation(len(paths))[:args.naive_clips]
    start = time.perf_counter()
    naive = naive_predictions(tflite_path, [paths[i] for i in order], settings)
    naive_seconds = time.perf_counter() - start
    naive_rate = len(order) / naive_seconds
    agree = float(np.mean(naive == fast[order]))
    print(f"naive loop:       {len(order)} clips in {naive_seconds:.2f} s = {naive_rate:,.0f} clips/s "
          f"(same prediction on {100 * agree:.1f}% of clips)")
    print(f"ratio: {fast_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
