"""The published models as teachers: each one's and their ensembles' accuracy on the fixed validation set.

    python bench/bench_teachers.py [--data_dir DIR] [--background_noise_dir DIR] [--models_dir DIR]

Every model in --models_dir (Pretrained_models: a folder with ckpt/ and a
*_quantized.json report naming its architecture and size, whose .tflite carries
its fingerprint settings) is run in float on the validation partition of
--data_dir (the fixed one: 10% silence and 10% unknown words drawn with one seed,
speakers outside the test set). Then ensembles (probabilities averaged) of the
best k by validation accuracy, k = 2 .. all, and the --teacher values of the best
ensemble, ready for train.py. The dev folder is not read: this chooses a teacher.
"""
import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kws import cli  # noqa: E402
from kws import vocabulary  # noqa: E402
from kws.cli import UsageError  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def make_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(SHARED / "speech_commands_v0.01_train"))
    parser.add_argument("--background_noise_dir", default=str(SHARED / "_background_noise_"))
    parser.add_argument("--models_dir", default=str(ROOT / "Pretrained_models"))
    parser.add_argument("--exclude", default="synthetic_only",
                        help="Comma list of path parts whose models are left out.")
    return parser


def published_models(models_dir: str, exclude: List[str]) -> List[Tuple[str, dict, dict]]:
    """(checkpoint folder, report, fingerprint settings) of each published model."""
    from kws.runtime import metadata
    found = []
    for report_path in sorted(glob.glob(os.path.join(models_dir, "**", "*_quantized.json"), recursive=True)):
        folder = os.path.dirname(report_path)
        if any(part in Path(folder).parts for part in exclude) or not os.path.isdir(os.path.join(folder, "ckpt")):
            continue
        with open(report_path) as handle:
            report = json.load(handle)
        with open(report_path[:-len(".json")] + ".tflite", "rb") as handle:
            payload = metadata.read_metadata(handle.read())
        if not payload:
            raise UsageError(f"{report_path[:-5]}.tflite carries no settings (re-export it with convert.py)")
        found.append((os.path.join(folder, "ckpt"), report, payload["model_settings"]))
    if not found:
        raise UsageError(f"--models_dir {models_dir} holds no published models (*_quantized.json + ckpt/)")
    return found


def teacher_value(checkpoint: str, report: dict, settings: dict) -> str:
    """The --teacher value of a published model."""
    sizes = " ".join(str(value) for value in report["model_size_info"])
    return (f"{checkpoint} --model_architecture {report['architecture']} --model_size_info {sizes} "
            f"--window_size_ms {settings['window_size_ms']:g} --window_stride_ms {settings['window_stride_ms']:g} "
            f"--dct_coefficient_count {settings['dct_coefficient_count']} "
            f"--preprocess {settings.get('preprocess', 'mfcc')}")


def main(args: argparse.Namespace) -> None:
    import numpy as np

    from kws import evaluation, features
    from kws.data import dataset, speech_commands
    from kws.models import registry
    from kws.training import checkpoints

    for flag, folder in (("--data_dir", args.data_dir), ("--models_dir", args.models_dir)):
        if not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder} is not a folder")
    found = published_models(args.models_dir, [part for part in args.exclude.split(",") if part])
    words = vocabulary.DEFAULT_WANTED_WORDS.split(",")
    label_count = len(words) + 2
    base = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    processor = speech_commands.AudioProcessor(dataset.DataSettings(
        args.data_dir, tuple(words), background_noise_dir=args.background_noise_dir), base)
    clips, labels = processor.clips("validation")
    print(f"Validation partition: {len(labels)} clips (fixed: 10% silence, 10% unknown)")
    probabilities: Dict[str, np.ndarray] = {}
    values: Dict[str, str] = {}
    for checkpoint, report, fields in found:
        settings = features.prepare_model_settings(
            fields["sample_rate"], fields["clip_duration_ms"], fields["window_size_ms"],
            fields["window_stride_ms"], fields["dct_coefficient_count"], fields.get("preprocess", "mfcc"))
        model = registry.create_model(settings, report["architecture"], report["model_size_info"],
                                      label_count=label_count)
        checkpoints.load_weights(model, checkpoint)
        name = os.path.relpath(os.path.dirname(checkpoint), args.models_dir)
        probabilities[name] = evaluation.predict(model, features.Fingerprinter(settings)(clips))
        values[name] = teacher_value(os.path.relpath(checkpoint, ROOT), report, fields)
        accuracy = float(np.mean(np.argmax(probabilities[name], axis=1) == labels))
        print(f"{name:28s} {accuracy:.4f}", flush=True)
    ranked = sorted(probabilities, key=lambda n: -np.mean(np.argmax(probabilities[n], axis=1) == labels))
    best = (0.0, ranked[:1])
    for k in range(2, len(ranked) + 1):
        average = np.mean([probabilities[name] for name in ranked[:k]], axis=0)
        accuracy = float(np.mean(np.argmax(average, axis=1) == labels))
        print(f"ensemble of the best {k:2d}: {accuracy:.4f} ({', '.join(ranked[:k])})", flush=True)
        best = max(best, (accuracy, ranked[:k]), key=lambda pair: pair[0])
    print(f"best ensemble: {best[0]:.4f}; its --teacher values:")
    print("--teacher " + " ".join(f"'{values[name]}'" for name in best[1]))


if __name__ == "__main__":
    cli.run(main, make_parser())
