"""A raw-audio model (convert.py --include_features) against the plain model: size, latency, accuracy.

    python bench/bench_raw_audio.py --plain work/raw_audio/ds_cnn_s_quantized.tflite \\
        --raw work/raw_audio/ds_cnn_s_audio_quantized.tflite \\
        --window_size_ms 40 --window_stride_ms 20 --dct_coefficient_count 10

For each of the two .tflite files: its size; its LiteRT latency per clip with one thread
(the median over --latency_clips clips of set_tensor + invoke + get_tensor, after a
warm-up; for the plain model also the numpy fingerprint of that one clip, which the
raw-audio model computes inside, and their sum); its accuracy on --test_dir (the dev
folder of ../shared by default). Then, between the two: the largest difference of a
score and how many clips get the same top label. The load average is printed before and
after: the machine is shared.
"""
import argparse
import os
import statistics
import sys
import time
from typing import Callable, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kws import evaluation  # noqa: E402
from kws import features  # noqa: E402
from kws import vocabulary  # noqa: E402
from kws.data import speech_commands  # noqa: E402
from kws.runtime import tensors  # noqa: E402
from kws.runtime.tflite_model import TFLiteModel  # noqa: E402

DEV_SET = os.path.join(os.path.dirname(ROOT), "shared", "data", "speech_commands_test_v0.02_dev")


def median_ms(run: Callable[[np.ndarray], object], clips: np.ndarray) -> float:
    """Median wall time of run(clip) over the clips, in milliseconds, after two warm-ups."""
    for clip in clips[:2]:
        run(clip)
    times: List[float] = []
    for clip in clips:
        start = time.perf_counter()
        run(clip)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def invoker(model: TFLiteModel) -> Callable[[np.ndarray], np.ndarray]:
    """One interpreter call on one model input (already of the input's type)."""
    interpreter, input_index, output_index = (model.interpreter, model.input["index"],
                                              model.output["index"])

    def invoke(one: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(input_index, one[None])
        interpreter.invoke()
        return interpreter.get_tensor(output_index)
    return invoke


def main(args: argparse.Namespace) -> None:
    print(f"Load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    settings = features.settings_from_flags(args)
    words = vocabulary.words_list_from_flags(args)
    clips, labels, _ = speech_commands.load_evaluation_folder(args.test_dir, words, settings)
    fingerprinter = features.Fingerprinter(settings)
    fingerprints = fingerprinter(clips)
    plain = TFLiteModel(args.plain, batch_size=1, num_threads=1)
    raw = TFLiteModel(args.raw, batch_size=1, num_threads=1)
    plain.check_settings(settings, words)
    raw.check_settings(settings, words)
    if plain.takes_audio or not raw.takes_audio:
        raise SystemExit("--plain must take fingerprints and --raw audio")
    timed = clips[:args.latency_clips]
    plain_inputs = tensors.quantize(fingerprinter(timed), plain.input)
    raw_inputs = features.clips_as(timed, raw.input["dtype"])
    fingerprint_ms = median_ms(lambda clip: fingerprinter(clip[None], batch_size=1), timed)
    plain_ms = median_ms(invoker(plain), plain_inputs)
    raw_ms = median_ms(invoker(raw), raw_inputs)
    plain_scores, raw_scores = plain.predict(fingerprints), raw.predict(clips)
    plain_accuracy = evaluation.evaluate(plain, fingerprints, labels, len(words)).accuracy
    raw_accuracy = evaluation.evaluate(raw, clips, labels, len(words)).accuracy
    print(f"Clips: {len(clips)} of {args.test_dir}; latency: median of {len(timed)} clips, "
          f"LiteRT, 1 thread")
    print(f"{'model':<36}{'bytes':>9}{'fingerprint ms':>16}{'model ms':>10}{'total ms':>10}"
          f"{'accuracy':>10}")
    print(f"{os.path.basename(args.plain):<36}{os.path.getsize(args.plain):>9,}"
          f"{fingerprint_ms:>16.3f}{plain_ms:>10.3f}{fingerprint_ms + plain_ms:>10.3f}"
          f"{plain_accuracy:>10.4f}")
    print(f"{os.path.basename(args.raw):<36}{os.path.getsize(args.raw):>9,}{'(inside)':>16}"
          f"{raw_ms:>10.3f}{raw_ms:>10.3f}{raw_accuracy:>10.4f}")
    same = int(np.sum(plain_scores.argmax(axis=1) == raw_scores.argmax(axis=1)))
    print(f"Scores: largest difference {np.abs(plain_scores - raw_scores).max():.4g}; "
          f"same top label on {same} of {len(clips)} clips")
    print(f"Load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", required=True, help="The plain .tflite (fingerprint input).")
    parser.add_argument("--raw", required=True, help="The raw-audio .tflite of the same model.")
    parser.add_argument("--test_dir", default=DEV_SET, help="Evaluation folder.")
    parser.add_argument("--latency_clips", type=int, default=300,
                        help="Clips timed one at a time.")
    parser.add_argument("--wanted_words", default="yes,no,up,down,left,right,on,off,stop,go")
    features.add_feature_flags(parser)
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
