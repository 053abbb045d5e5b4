"""Pretrained_models/wake_words: each published detector carries its word, its threshold and
what the deployment tools need, runs under TFLM, and is scored with no flag but the file's."""
import json
from pathlib import Path

import numpy as np
import pytest

import test_streaming_accuracy
from kws.runtime import metadata
from kws.runtime.tflite_model import TFLiteModel

from conftest import ROOT, write_wav

FOLDER = ROOT / "Pretrained_models" / "wake_words"
WORDS = sorted(path.name for path in FOLDER.iterdir() if (path / f"{path.name}.tflite").exists())


def test_the_backbone_and_the_detectors_the_issue_names_are_published():
    assert (FOLDER / "backbone" / "ckpt" / "checkpoint").exists()
    assert {"cat", "happy"} <= set(WORDS)


@pytest.mark.parametrize("word", WORDS)
def test_a_detector_carries_its_word_threshold_and_report(word):
    content = (FOLDER / word / f"{word}.tflite").read_bytes()
    payload = metadata.read_metadata(content)
    assert payload["labels"] == ["_silence_", "_unknown_", word]
    assert 0 < payload["threshold"] < 1
    report = json.loads((FOLDER / word / f"{word}_report.json").read_text())
    assert report["file_bytes"] == len(content)
    assert report["threshold"]["false_alarms_per_hour"] <= report["threshold"][
        "target_false_alarms_per_hour"]
    scores = {runtime: TFLiteModel(content=content, runtime=runtime).predict(
        np.zeros((1, 490), np.float32)) for runtime in ("litert", "tflm")}
    assert np.allclose(scores["litert"], scores["tflm"], atol=0.05)


@pytest.mark.parametrize("word", WORDS[:1])
def test_test_streaming_accuracy_needs_only_the_file(word, tmp_path, capsys):
    rng = np.random.default_rng(0)
    wav = write_wav(tmp_path / "stream.wav", rng.integers(-300, 300, 16000 * 6))
    truth = Path(tmp_path / "truth.txt")
    truth.write_text(f"{word},2500\n")
    test_streaming_accuracy.main(test_streaming_accuracy.build_parser().parse_args(
        ["--tflite_path", str(FOLDER / word / f"{word}.tflite"), "--wav", str(wav),
         "--ground_truth", str(truth)]))
    out = capsys.readouterr().out
    threshold = metadata.read_metadata((FOLDER / word / f"{word}.tflite").read_bytes())["threshold"]
    assert f"At threshold {threshold:g}" in out
