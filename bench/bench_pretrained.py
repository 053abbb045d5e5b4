"""The table of Pretrained_models/: each published int8 file's figures and its LiteRT latency.

    python bench/bench_pretrained.py [--family 30K] [--runs 200]

For every <model>_quantized.tflite under Pretrained_models/ with its
deployment report (<model>_quantized.json, written by convert.py
--report_json): dev accuracy of the float checkpoint and of the int8 file
(as convert.py measured them on --test_dir), parameters, int8 bytes, MACs,
the tensor arena of the liveness plan and the one TFLM allocated, and the
int8 inference time per clip measured here in LiteRT (one thread, batch 1,
median of --runs after a warm-up), beside kws_streaming's published figures
for its 30k architectures (on its own split).
"""
import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kws import cli  # noqa: E402
from kws.runtime import report as tflite_report  # noqa: E402

# kws_streaming's published float / quantized accuracy on its own split
# (kws_experiments_30k_12_labels.md), for the 30K family.
KWS_STREAMING = {"svdf": "91.1 / 91.1", "svdf_resnet": "94.6 / 94.6", "tc_resnet": "95.7 / 94.6",
                 "mobilenet": "92.5 / 91.5", "mobilenet_v2": "95.0 / 94.1",
                 "inception": "95.9 / 94.9", "inception_resnet": "95.8 / 94.8",
                 "xception": "94.8 / 94.0"}


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def row(tflite_path: str, runs: int) -> str:
    """One markdown row of a published model."""
    report_path = tflite_path[:-len(".tflite")] + ".json"
    if not os.path.exists(report_path):
        raise cli.UsageError(f"{report_path} is missing: convert.py --report_json writes it")
    with open(report_path) as handle:
        figures = json.load(handle)
    report, accuracy = figures["report"], figures.get("accuracy", {})
    name = os.path.relpath(os.path.dirname(tflite_path), os.path.join(ROOT, "Pretrained_models"))
    reference = KWS_STREAMING.get(figures["architecture"], "–")
    dev = (f"{accuracy['float']:.4f} | {accuracy['tflite']:.4f}" if "float" in accuracy
           else "– | –")
    return (f"| `{name}` | {dev} | {reference} | {figures['keras']['parameters']:,} "
            f"| {report['file_bytes']:,} | {report['macs']:,} | {report['arena_bytes']:,} "
            f"| {report.get('tflm_arena_bytes', 0):,} | {tflite_report.invoke_ms(_read(tflite_path), runs):.3f} |")


def main(args: argparse.Namespace) -> None:
    folder = os.path.join(ROOT, "Pretrained_models", args.family)
    paths = sorted(glob.glob(os.path.join(folder, "**", "*_quantized.tflite"), recursive=True))
    if not paths:
        raise cli.UsageError(f"--family {args.family}: no *_quantized.tflite under {folder}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| model | real dev: float | real dev: int8 | kws_streaming float / quantized "
          "| parameters | int8 bytes | MACs | arena bytes (plan) | TFLM arena | LiteRT ms (1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path, args.runs), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--family", default="",
                        help="A folder of Pretrained_models/ (e.g. 30K); default: all.")
    parser.add_argument("--runs", type=cli.positive_int, default=200, help="Timed inferences each.")
    cli.run(main, parser)
