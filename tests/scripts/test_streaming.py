"""Detection on continuous audio: sliding windows equal clip fingerprints, the detection rule
and its metrics on a recording whose answer is known, the test recording and its ground
truth, both scripts end to end, and a real model on real speech."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import generate_streaming_test_wav
import label_wav
import test_streaming_accuracy
from kws import cli, features
from kws.cli import UsageError
from kws.detection import detector, recordings

from conftest import ROOT, make_speech_commands, write_wav

DS_CNN_S = ROOT / "Pretrained_models" / "DS_CNN" / "DS_CNN_S" / "ds_cnn_s_quantized.tflite"
DS_CNN_FLAGS = ["--window_size_ms", "40", "--window_stride_ms", "20", "--dct_coefficient_count", "10"]
DEFAULTS = detector.DetectionSettings(30.0, 500.0, 0.7, 1500.0)


# ---------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("window_stride_ms, phases", [(10, 1), (20, 2), (40, 4)])
def test_window_fingerprints_equal_those_of_the_clips(window_stride_ms, phases):
    settings = features.prepare_model_settings(16000, 1000, 40, window_stride_ms, 10)
    audio = np.random.default_rng(0).integers(-8000, 8000, 16000 * 3).astype(np.int16)
    windows = detector.SlidingWindows(audio, settings, stride_samples=480)  # every 30 ms
    assert len(windows) == 1 + (len(audio) - 16000) // 480 and windows.phases == phases
    clips = np.stack([audio[offset:offset + 16000] for offset in windows.offsets])
    expected = features.Fingerprinter(settings)(clips)
    np.testing.assert_allclose(windows.fingerprints(np.arange(len(windows))), expected,
                               atol=1e-4 * np.abs(expected).max())


# ---------------------------------------------------------------- a recording with a known answer

# Frames as long as their stride and as the clip stride (30 ms), and markers on that grid:
# every window's first frame is all marker noise or all silence. The stub scorer gives the
# label whose marker level is nearest to the energy (c0) of a window's first frame.
MARK_SETTINGS = features.prepare_model_settings(16000, 1000, 30, 30, 10)
LABELS = ["_silence_", "_unknown_", "yes", "no"]
LEVELS = {"_unknown_": 0.01, "yes": 0.05, "no": 0.5}  # amplitude of each marker's noise
DURATION_MS = 20000
MARKERS = [("yes", 1500, 2400), ("no", 6000, 600), ("yes", 9990, 600), ("_unknown_", 12000, 900),
           ("no", 17010, 600)]
TRUTH = [recordings.Keyword("yes", 1500), recordings.Keyword("yes", 6000),
         recordings.Keyword("no", 14010), recordings.Keyword("no", 17010)]


def noise(level, samples, seed=0):
    return np.random.default_rng(seed).uniform(-level, level, samples) * 32767


def marked_recording():
    audio = np.zeros(DURATION_MS * 16, dtype=np.float64)
    for seed, (label, start_ms, length_ms) in enumerate(MARKERS):
        audio[start_ms * 16:(start_ms + length_ms) * 16] = noise(LEVELS[label], length_ms * 16, seed)
    return np.round(audio).astype(np.int16)


class MarkerScorer:
    """Scores 1 for the label of the marker under a window's first frame (silence if none)."""

    def __init__(self):
        fingerprinter = features.Fingerprinter(MARK_SETTINGS)
        clips = np.stack([np.zeros(16000)] + [noise(LEVELS[label], 16000) for label in LABELS[1:]])
        self.levels = fingerprinter(clips.astype(np.int16))[:, 0]

    def __call__(self, fingerprints):
        nearest = np.argmin(np.abs(fingerprints[:, :1] - self.levels[None, :]), axis=1)
        return np.eye(len(LABELS), dtype=np.float32)[nearest]


@pytest.fixture(scope="module")
def marked_stream():
    return detector.stream_scores(marked_recording(), MARK_SETTINGS, MarkerScorer(), LABELS,
                                   DEFAULTS)


def test_detections_smoothing_and_suppression(marked_stream):
    # 17 windows are averaged (500 ms / 30 ms + the newest); a marker fires every window whose
    # first frame it covers, so the 12th such window (12/17 > 0.7) detects: 330 ms in.
    detections = marked_stream.detections(0.7, 1500)
    assert [(d.time_ms, d.label) for d in detections] == [
        (1830, "yes"), (3360, "yes"), (6330, "no"), (10320, "yes"), (17340, "no")]
    assert detections[0].score == pytest.approx(12 / 17)
    # The long marker fires again once 1500 ms have passed; not within 3000 ms.
    assert [d.time_ms for d in marked_stream.detections(0.7, 3000)] == [1830, 6330, 10320, 17340]
    # The _unknown_ marker at 12000 ms is never a detection, at any threshold.
    assert not [d for d in marked_stream.detections(0.0, 0) if 11000 < d.time_ms < 13500]


def test_hits_wrong_labels_false_alarms_and_latency(marked_stream):
    figures = detector.match(marked_stream.detections(0.7, 1500), TRUTH, 750, DURATION_MS / 1000,
                              1000).figures()
    assert figures["counts"] == {"ground_truth": 4, "detections": 5, "hits": 2, "wrong_labels": 1,
                                 "misses": 1, "false_alarms": 2}
    assert figures["hit_rate"] == 0.5 and figures["wrong_label_rate"] == 0.25
    assert figures["false_alarms_per_hour"] == pytest.approx(2 * 3600 / 20)
    assert figures["mean_latency_ms"] == pytest.approx(330 + 1000)  # to the end of the window
    line = detector.format_figures(figures)
    assert "hit_rate 0.5000 (2/4)" in line and "false_alarms_per_hour 360.0" in line
    # Each detection is 330 ms after its marker: within 300 ms, all are false alarms.
    tight = detector.match(marked_stream.detections(0.7, 1500), TRUTH, 300, 20, 1000).figures()
    assert tight["counts"]["misses"] == 4 and tight["counts"]["false_alarms"] == 5


def test_sweep_is_the_detection_at_each_threshold(marked_stream):
    rows = detector.sweep(marked_stream, TRUTH, 1500, 750, 20, 1000)
    assert [row["threshold"] for row in rows] == list(detector.SWEEP_THRESHOLDS)
    at_default = next(row for row in rows if row["threshold"] == 0.7)
    expected = detector.match(marked_stream.detections(0.7, 1500), TRUTH, 750, 20, 1000).figures()
    assert {key: at_default[key] for key in expected} == expected
    # The marker at 9990 ms with no keyword averages 1.0: a false alarm at every threshold.
    assert detector.threshold_for_false_alarms(rows, 1.0) is None
    assert rows[-1]["counts"]["false_alarms"] >= 1
    assert detector.format_sweep(rows).splitlines()[0].startswith("threshold  miss_rate")


def test_first_decision_after_four_results_and_a_quarter_window():
    scores = np.tile(np.eye(3, dtype=np.float32)[2], (40, 1))  # the keyword from the start
    stream = detector.smooth(np.arange(40) * 30.0, scores, ["_silence_", "_unknown_", "yes"],
                              30.0, 500.0)
    assert stream.detections(0.7, 1500)[0].time_ms == 150  # 6 results span 150 >= 125 ms
    stream = detector.smooth(np.arange(40) * 30.0, scores, ["_silence_", "_unknown_", "yes"],
                              30.0, 0.0)
    assert stream.detections(0.7, 1500)[0].time_ms == 0  # no averaging: the first window decides


# ---------------------------------------------------------------- the test recording


def generator_args(argv):
    return generate_streaming_test_wav.build_parser().parse_args(argv)


def test_ground_truth_round_trip_and_tensorflow_format(tmp_path):
    path = tmp_path / "truth.txt"
    recordings.write_ground_truth(str(path), [recordings.Keyword("yes", 1500),
                                             recordings.Keyword("no", 420)])
    assert path.read_text() == "yes,1500\nno,420\n"
    assert recordings.read_ground_truth(str(path)) == [("no", 420), ("yes", 1500)]
    # TensorFlow's generator: "label, time" with a float time, and _unknown_ lines.
    path.write_text("yes, 1500.500000\n_unknown_, 3000.000000\n\nup, 6000.0\n")
    assert recordings.read_ground_truth(str(path)) == [("yes", 1500.5), ("up", 6000)]
    path.write_text("yes,1500\nyes 3000\n")
    with pytest.raises(UsageError, match=r"truth.txt: line 2 is not 'label,time_ms'"):
        recordings.read_ground_truth(str(path))
    with pytest.raises(UsageError, match="--ground_truth .*missing.txt"):
        recordings.read_ground_truth(str(tmp_path / "missing.txt"))


def test_generator_is_deterministic_and_places_words_in_slots(speech_commands_dir):
    args = generator_args(["--test_dir", str(speech_commands_dir), "--wanted_words", "yes,no,up",
                           "--duration_s", "30", "--unknown_percentage", "30"])
    words = recordings.words_from_flags(args)
    assert sorted(words.keywords) == ["no", "up", "yes"] and len(words.unknown) == 48  # cat, dog
    mixing = recordings.mixing_from_flags(args)
    audio, truth = recordings.generate(words, [], mixing)
    again, same_truth = recordings.generate(words, [], mixing)
    assert np.array_equal(audio, again) and truth == same_truth
    other, other_truth = recordings.generate(words, [], recordings.mixing_from_flags(
        generator_args(["--test_dir", str(speech_commands_dir), "--duration_s", "30", "--seed", "1"])))
    assert not np.array_equal(audio, other)
    assert len(audio) == 30 * 16000 and 3 <= len(truth) <= 10  # 10 slots of 3 s, 30% unknown
    for keyword in truth:
        slot = keyword.time_ms // 3000
        assert keyword.label in ("yes", "no", "up") and keyword.time_ms - slot * 3000 < 2000
        start = int(keyword.time_ms) * 16
        assert np.abs(audio[start:start + 16000]).max() > 1000  # the clip is there
    assert np.count_nonzero(audio) <= 10 * 16000  # no noise: only the 10 words are not silence


def test_generator_takes_a_partition_of_a_data_dir(speech_commands_dir):
    args = generator_args(["--data_dir", str(speech_commands_dir), "--wanted_words", "yes,no",
                           "--partition", "testing"])
    words = recordings.words_from_flags(args)
    # 2 testing speakers x 2 clips per word; up, cat and dog are unknown words.
    assert {word: len(clips) for word, clips in words.keywords.items()} == {"yes": 4, "no": 4}
    assert len(words.unknown) == 12
    with pytest.raises(UsageError, match="--test_dir or --data_dir"):
        recordings.words_from_flags(generator_args([]))


# ---------------------------------------------------------------- the scripts


def run_script(script, argv):
    return subprocess.run([sys.executable, str(ROOT / script)] + argv, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_scripts_end_to_end(tmp_path, capsys):
    data = make_speech_commands(tmp_path / "data")
    wav, truth, report = tmp_path / "stream.wav", tmp_path / "truth.txt", tmp_path / "figures.json"
    generated = run_script("generate_streaming_test_wav.py", [
        "--test_dir", str(data), "--background_noise_dir", str(data / "_background_noise_"),
        "--wanted_words", "yes,no,up", "--duration_s", "20", "--output_wav", str(wav),
        "--output_ground_truth", str(truth)])
    assert generated.returncode == 0, generated.stderr
    lines = truth.read_text().splitlines()
    assert lines and all(re.fullmatch(r"(yes|no|up),\d+", line) for line in lines)
    measured = run_script("test_streaming_accuracy.py", [
        "--wav", str(wav), "--ground_truth", str(truth), "--tflite_path", str(DS_CNN_S),
        "--sweep_thresholds", "--output_json", str(report)] + DS_CNN_FLAGS)
    assert measured.returncode == 0, measured.stderr
    assert "hit_rate" in measured.stdout and "false_alarms_per_hour" in measured.stdout
    figures = json.loads(report.read_text())
    assert figures["counts"]["ground_truth"] == len(lines) and len(figures["sweep"]) == 102
    assert {"hit_rate", "wrong_label_rate", "false_alarms_per_hour", "mean_latency_ms"} <= set(figures)
    # label_wav: a recording gives one line per detection, a clip its top labels as before.
    clip = write_wav(tmp_path / "clip.wav", np.zeros(16000))
    label_wav.main(label_wav.build_parser().parse_args(
        ["--tflite_path", str(DS_CNN_S), str(wav), str(clip)] + DS_CNN_FLAGS))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{wav}:" and out[-4] == f"{clip}:"
    assert all(re.fullmatch(r"\d+ \w+ \d\.\d{5}|no keyword above --detection_threshold 0\.7", line)
               for line in out[1:-4])
    assert all("(score = " in line for line in out[-3:])


def test_bad_input_is_one_line(tmp_path, capsys):
    wav = write_wav(tmp_path / "short.wav", np.zeros(8000))
    truth = tmp_path / "truth.txt"
    truth.write_text("yes,100\n")
    argv = ["--wav", str(wav), "--ground_truth", str(truth),
            "--tflite_path", str(DS_CNN_S)] + DS_CNN_FLAGS
    for extra, message in (([], "shorter than one clip"),
                           (["--clip_stride_ms", "0.01"], "--clip_stride_ms 0.01 is under one sample")):
        with pytest.raises(SystemExit) as exit:
            cli.run(test_streaming_accuracy.main, test_streaming_accuracy.build_parser(), argv + extra)
        assert exit.value.code == 2
        error = capsys.readouterr().err
        assert message in error and error.strip().count("\n") == 0


# ---------------------------------------------------------------- a real model on real speech


def test_pretrained_ds_cnn_on_a_minute_of_real_speech(shared_dir, tmp_path):
    dev = shared_dir / "data" / "speech_commands_test_v0.02_dev"
    args = generator_args(["--test_dir", str(dev), "--background_noise_dir",
                           str(shared_dir / "data" / "_background_noise_"), "--duration_s", "60"])
    audio, truth = recordings.generate(recordings.words_from_flags(args),
                                      recordings.load_noise(args.background_noise_dir, 16000),
                                      recordings.mixing_from_flags(args))
    from kws.runtime import tflite_model
    scorer = tflite_model.TFLiteModel(str(DS_CNN_S)).predict
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    labels = ["_silence_", "_unknown_"] + "yes,no,up,down,left,right,on,off,stop,go".split(",")
    stream = detector.stream_scores(audio, settings, scorer, labels, DEFAULTS)
    figures = detector.match(stream.detections(0.7, 1500), truth, 750, 60, 1000).figures()
    assert figures["counts"]["ground_truth"] >= 10
    assert figures["hit_rate"] >= 0.6 and figures["counts"]["false_alarms"] <= 3
    assert 500 <= figures["mean_latency_ms"] <= 1500
