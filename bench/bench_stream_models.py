"""Streaming against non-streaming: latency and multiply-accumulates per second of audio.

    python bench/bench_stream_models.py [--runs 200]

Every architecture that streams (kws/export/stateful_model.py) at its default size, with
bench_model_zoo.py's features (paper models 40 ms / 20 ms / 10 coefficients,
kws_streaming's 40 ms / 20 ms / 40), 12 labels, 1 s clips, random seeded
weights: none of these figures depends on their values. Both forms are
convert.py's default int8 (float input and output), calibrated on random
fingerprints. Latency: LiteRT with one thread, batch 1, median of --runs after
a warm-up. MACs are counted on the .tflite graphs (tflite_report). A
non-streaming detector runs the whole window every --clip_stride_ms (30, the
default of test_streaming_accuracy.py), or at best at the streaming model's
stride; the streaming model runs once per stride (frames_per_call frames).
Also checks that each streaming .tflite gives the Keras model's scores on two
clips and whether TensorFlow Lite for Microcontrollers runs it (its arena).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kws import cli  # noqa: E402
from kws import features  # noqa: E402
from kws import tf_env
from kws.export import quantization  # noqa: E402
from kws.export import stateful_model  # noqa: E402
from kws.models import registry  # noqa: E402
from kws.runtime import report  # noqa: E402
from kws.runtime import tflite_model  # noqa: E402
from kws.runtime import tflm as tflm_runtime  # noqa: E402

STREAMABLE = ("cnn", "basic_lstm", "lstm", "gru", "crnn", "svdf", "svdf_resnet")
KWS30K = ("svdf", "svdf_resnet")
INT8 = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
CLIP_STRIDE_MS = 30.0


def measure(architecture: str, runs: int) -> dict:
    coefficients = 40 if architecture in KWS30K else 10
    settings = features.prepare_model_settings(16000, 1000, 40, 20, coefficients)
    tf_env.import_tensorflow().keras.utils.set_random_seed(0)
    model = registry.create_model(settings, architecture, None, label_count=12)
    streaming = stateful_model.streaming_model(model, settings, architecture)
    fingerprints = np.random.default_rng(0).normal(
        0, 10, (100, settings.fingerprint_size)).astype(np.float32)
    window = quantization.to_tflite(model, INT8, fingerprints)
    stream = quantization.to_tflite(streaming, INT8, fingerprints)
    check = fingerprints[:2]
    error = float(np.abs(tflite_model.TFLiteModel(content=stream).predict(check)
                         - model(check, training=False).numpy()).max())
    tflm = tflm_runtime.report_figures(stream, architecture)
    stride_ms = streaming.frames_per_call * settings.window_stride_ms
    return {"window_ms": report.invoke_ms(window, runs), "call_ms": report.invoke_ms(stream, runs),
            "window_macs": report.analyze(window)["macs"],
            "call_macs": report.analyze(stream)["macs"], "stride_ms": stride_ms,
            "frames": streaming.frames_per_call, "states": len(streaming.state_shapes),
            "int8_error": error,
            "tflm": f"{tflm['tflm_arena_bytes']:,} B arena" if "tflm_arena_bytes" in tflm
            else tflm["tflm_error"]}


def main(args: argparse.Namespace) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| architecture | frames per call (stride) | states | int8 ms per window | int8 ms "
          "per call | MACs per window | MACs per call | MMACs per s: window every 30 ms "
          "| window every stride | streaming | int8 max score error | TFLM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.architectures.split(","):
        f = measure(name, args.runs)
        per_second = 1000 / f["stride_ms"]
        print(f"| {name} | {f['frames']} ({f['stride_ms']:g} ms) | {f['states']} "
              f"| {f['window_ms']:.3f} | {f['call_ms']:.3f} | {f['window_macs']:,} "
              f"| {f['call_macs']:,} | {f['window_macs'] * 1000 / CLIP_STRIDE_MS / 1e6:.1f} "
              f"| {f['window_macs'] * per_second / 1e6:.1f} "
              f"| {f['call_macs'] * per_second / 1e6:.2f} | {f['int8_error']:.3f} "
              f"| {f['tflm']} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--architectures", default=",".join(STREAMABLE),
                        help="Comma-separated architectures.")
    parser.add_argument("--runs", type=cli.positive_int, default=200, help="Timed inferences each.")
    cli.run(main, parser)
