"""Deployment figures of every architecture at its default size, int8.

    python bench/bench_model_zoo.py [--architectures svdf,tc_resnet] [--runs 200]

For each architecture: parameters and MACs (models.py), the int8 .tflite that
convert.py's default mode makes (calibrated on random fingerprints: sizes and
speed do not depend on the weights' values), its bytes, peak activation memory
and tensor arena (kws/runtime/report.py), and the int8 inference time per clip in
LiteRT with one thread (batch 1, median of --runs after a warm-up).
"""
import argparse
import os
import sys
from typing import Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kws import cli  # noqa: E402
from kws import features  # noqa: E402
from kws.export import calibration  # noqa: E402
from kws.export import quantization  # noqa: E402
from kws.models import registry  # noqa: E402
from kws.runtime import report as tflite_report  # noqa: E402

PAPER_FEATURES = (40, 20, 10, features.MFCC)  # window ms, stride ms, features per frame, type
KWS30K_FEATURES = (40, 20, 40, features.MFCC)
KWS30K = ("svdf", "svdf_resnet", "tc_resnet", "mobilenet", "mobilenet_v2", "inception",
          "inception_resnet", "xception")
PUBLISHED_FEATURES = {"bc_resnet": (30, 10, 40, features.LOG_MEL)}


def int8_model(architecture: str) -> Tuple["registry.tf.keras.Model", bytes]:
    """The default-size model of architecture and its int8 .tflite as convert.py makes it by default."""
    window, stride, count, preprocess = PUBLISHED_FEATURES.get(
        architecture, KWS30K_FEATURES if architecture in KWS30K else PAPER_FEATURES)
    if architecture == "dnn":
        stride = 40
    settings = features.prepare_model_settings(16000, 1000, window, stride, count, preprocess)
    model = registry.create_model(settings, architecture, None, label_count=12)
    fingerprints = np.random.default_rng(0).normal(
        0, 10, (100, settings.fingerprint_size)).astype(np.float32)
    mode = quantization.MODES[(quantization.FULL_INTEGER, "float32")]
    return model, quantization.to_tflite(model, mode, fingerprints,
                                             calibration.DEFAULT_INPUT_CLIP_PERCENTILE)


def main(args: argparse.Namespace) -> None:
    names = args.architectures.split(",") if args.architectures else list(registry.MODELS)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| architecture | parameters | MACs | int8 .tflite bytes | peak activation bytes "
          "| tensor arena bytes | int8 ms/clip (1 thread) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        model, content = int8_model(name)
        report = tflite_report.analyze(content)
        print(f"| {name} | {registry.count_parameters(model):,} | {registry.count_macs(model):,} "
              f"| {report['file_bytes']:,} | {report['peak_activation_bytes']:,} "
              f"| {report['arena_bytes']:,} | {tflite_report.invoke_ms(content, args.runs):.3f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--architectures", default="",
                        help="Comma-separated architectures (default: all registered).")
    parser.add_argument("--runs", type=cli.positive_int, default=200, help="Timed inferences each.")
    cli.run(main, parser)
