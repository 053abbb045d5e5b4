"""Pretrained_models/: each model that train_commands.txt packages is there, loads with its
plain flags, and scores on the real test folder what Pretrained_models/README.md says."""
import json
import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

import convert
from kws import features, vocabulary
from kws.data import speech_commands
from kws.models import registry
from kws.runtime import metadata as model_metadata
from kws.runtime import tflite_model
from kws.runtime import tflm as tflm_runtime
from kws.training import checkpoints

from conftest import ROOT, SHARED

DEV_DIR = SHARED / "data" / "speech_commands_test_v0.02_dev"
EXPECTED = {"DS_CNN/DS_CNN_S", "DS_CNN/DS_CNN_M", "CNN/CNN_S", "DNN/DNN_S", "Basic_LSTM/Basic_LSTM_S",
            "synthetic_only/DS_CNN_S"} | {f"30K/{architecture}" for architecture in (
                "svdf", "svdf_resnet", "tc_resnet", "mobilenet", "mobilenet_v2", "inception",
                "inception_resnet", "xception")}


def packaging_lines() -> List:
    """convert.py's parsed flags for each `python convert.py ... Pretrained_models/...` line."""
    lines = (ROOT / "train_commands.txt").read_text().splitlines()
    return [convert.build_parser().parse_args(shlex.split(line)[2:]) for line in lines
            if line.startswith("python convert.py") and "Pretrained_models/" in line]


PACKAGED = packaging_lines()


def model_name(args) -> str:
    """DS_CNN/DS_CNN_S for --output_file Pretrained_models/DS_CNN/DS_CNN_S/ds_cnn_s_quantized.tflite."""
    return Path(args.output_file).parent.relative_to("Pretrained_models").as_posix()


def readme_table() -> Dict[str, Tuple[float, float]]:
    """Model folder -> (real dev float, real dev int8) from Pretrained_models/README.md's table."""
    rows = {}
    for line in (ROOT / "Pretrained_models" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) > 3 and re.fullmatch(r"0\.\d{4}", cells[1]) and re.fullmatch(r"0\.\d{4}", cells[2]):
            rows[cells[0].strip("`")] = (float(cells[1]), float(cells[2]))
    return rows


IDS = [model_name(args) for args in PACKAGED]


def test_every_model_the_issue_names_is_packaged_and_in_the_table():
    assert set(IDS) == EXPECTED
    assert set(readme_table()) == EXPECTED


@pytest.mark.parametrize("args", PACKAGED, ids=IDS)
def test_checkpoint_loads_with_the_plain_flags_and_fits_its_tflite(args):
    settings = features.settings_from_flags(args)
    model = registry.create_model(settings, args.model_architecture, args.model_size_info,
                                  label_count=len(vocabulary.words_list_from_flags(args)))
    checkpoints.load_weights(model, str(ROOT / args.checkpoint))
    tflite = tflite_model.TFLiteModel(str(ROOT / args.output_file))
    assert tflite.input_shape[-1] == settings.fingerprint_size
    report = json.loads((ROOT / args.report_json).read_text())
    assert report["report"]["file_bytes"] == (ROOT / args.output_file).stat().st_size


@pytest.mark.parametrize("args", PACKAGED, ids=IDS)
def test_int8_file_carries_the_labels_and_settings_it_was_made_with(args):
    """The metadata that lets the deployment tools run each file without flags."""
    metadata = model_metadata.read_metadata((ROOT / args.output_file).read_bytes())
    settings = features.settings_from_flags(args)
    assert metadata["labels"] == vocabulary.words_list_from_flags(args)
    values = model_metadata.file_values(metadata)
    for field in ("sample_rate", "clip_duration_ms", "window_size_ms", "window_stride_ms",
                  "dct_coefficient_count"):
        assert values[field] == getattr(settings, field), field
    assert metadata["input"] == {"kind": "fingerprint", "streaming": False, "features_per_frame":
                                 settings.dct_coefficient_count,
                                 "frames_per_call": settings.spectrogram_length}


@pytest.mark.skipif(not DEV_DIR.is_dir(), reason=f"needs the real test folder {DEV_DIR} (../shared)")
@pytest.mark.parametrize("args", PACKAGED, ids=IDS)
def test_int8_accuracy_on_real_speech_is_what_the_readme_states(args):
    settings = features.settings_from_flags(args)
    words = vocabulary.prepare_words_list(vocabulary.wanted_words_from_flags(args))
    clips, labels, _ = speech_commands.load_evaluation_folder(str(DEV_DIR), words, settings)
    fingerprints = features.Fingerprinter(settings)(clips)
    scores = tflite_model.TFLiteModel(str(ROOT / args.output_file)).predict(fingerprints)
    accuracy = float(np.mean(np.argmax(scores, axis=1) == labels))
    assert accuracy == pytest.approx(readme_table()[model_name(args)][1], abs=5e-5)


@pytest.mark.parametrize("args", PACKAGED, ids=IDS)
def test_int8_file_runs_on_tflm_as_on_litert_with_the_arena_its_report_states(args):
    """Every packaged .tflite is a microcontroller graph: TensorFlow Lite for Microcontrollers
    runs it (batch 1, no shape arithmetic) in the arena its report states, and picks the label
    LiteRT's reference kernels pick. Its scores are those kernels' up to rounding, which stacked
    FULLY_CONNECTED layers grow (tests/scripts/test_tflm.py): on these 64 random fingerprints up to 14
    output steps for DNN_S, 0 for DS_CNN_S and inception; the top label differed once, for
    Basic_LSTM_S. BENCHMARKS.md has the accuracy on real speech in both runtimes."""
    path = ROOT / args.output_file
    settings = features.settings_from_flags(args)
    rng = np.random.default_rng(0)
    fingerprints = rng.normal(-5, 12, (64, settings.fingerprint_size)).astype(np.float32)
    reference = tflite_model.TFLiteModel(str(path), runtime=tflite_model.LITERT_REFERENCE)
    tflm = tflite_model.TFLiteModel(str(path), runtime=tflite_model.TFLM)
    agree = np.argmax(reference.predict(fingerprints), 1) == np.argmax(tflm.predict(fingerprints), 1)
    assert agree.sum() >= len(agree) - 2
    report = json.loads((ROOT / args.report_json).read_text())["report"]
    arena = tflm_runtime.arena(path.read_bytes())
    assert (report["tflm_arena_bytes"], report["tflm_activation_bytes"]) == (arena["total"], arena["head"])
    assert not {"SHAPE", "STRIDED_SLICE", "FILL"} & set(report["ops"])
