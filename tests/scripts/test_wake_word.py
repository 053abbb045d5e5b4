"""The wake-word detector: --exclude_words, near misses, the hard negatives' stream, the
threshold chooser, the whole train_wake_word.py command on a tiny backbone, and its bad inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kws import cli, vocabulary
from kws.data import data_split, speech_commands, synthesis_engines
from kws.detection import detector as detection
from kws.detection import recordings as test_recordings
from kws.runtime import metadata
from kws.wake_word import data as wake_word_data
from kws.wake_word import near_misses, stages

from conftest import ROOT, fake_speakers, make_speech_commands, processor


def test_excluded_words_are_in_no_partition_neither_keywords_nor_unknown(tmp_path):
    data = make_speech_commands(tmp_path / "data", ("yes", "no"), ("cat", "dog", "bed"))
    audio = processor(data, wanted_words=["yes", "no"], unknown_percentage=100,
                      exclude_words=["bed", "cat"])
    paths = [path for partition in speech_commands.PARTITIONS
             for path, _ in audio.data_index[partition]] + list(audio.unknown_pool)
    words = {os.path.basename(os.path.dirname(path)) for path in paths if path}
    assert words == {"yes", "no", "dog"}
    parser = cli.make_parser("data")
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    args = parser.parse_args(["--data_url", "", "--data_dir", str(data), "--wanted_words", "yes,no",
                              "--exclude_words", "bed,cat", "--unknown_percentage", "100"])
    flagged = speech_commands.AudioProcessor.from_flags(args, audio.model_settings)
    assert flagged.data_index == audio.data_index
    keywords, unknowns = data_split.scan([str(data)], [], ["yes", "no"], 10, 10)
    assert any("/bed/" in path for part in unknowns.values() for path, _ in part)
    with pytest.raises(cli.UsageError, match="--exclude_words yes is also in --wanted_words"):
        data_split.scan([str(data)], [], ["yes", "no"], 10, 10, ["yes"])
    with pytest.raises(cli.UsageError, match="--exclude_words happy not found"):
        data_split.scan([str(data)], [], ["yes", "no"], 10, 10, ["happy"])


TINY_BACKBONE_FLAGS = ["--model_architecture", "ds_cnn", "--model_size_info",
                       "2", "8", "10", "4", "2", "2", "8", "3", "3", "1", "1",
                       "--dct_coefficient_count", "10", "--window_size_ms", "40",
                       "--window_stride_ms", "20"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny data set (30 training speakers: some for the negative stream) and a tiny backbone
    trained on it for a few steps with train.py."""
    import train
    root = tmp_path_factory.mktemp("wake_word")
    data = make_speech_commands(root / "data", ("yes", "no", "up"), ("dog", "bed"),
                                speakers=fake_speakers((30, 3, 3)), clips_per_speaker=1)
    args = train.build_parser().parse_args([
        *TINY_BACKBONE_FLAGS, "--data_url", "", "--data_dir", str(data), "--wanted_words",
        "yes,no,up", "--exclude_words", "bed", "--train_dir", str(root / "backbone"),
        "--summaries_dir", "", "--how_many_training_steps", "4", "--learning_rate", "0.01",
        "--batch_size", "8", "--eval_step_interval", "4"])
    train.main(args)
    backbone = " ".join([str(root / "backbone" / "best"), *TINY_BACKBONE_FLAGS])
    return root, data, backbone


def wake_word_flags(tiny, output_dir, *extra) -> list:
    root, data, backbone = tiny
    return ["--wake_word", "happy", "--output_dir", str(output_dir), "--backbone", backbone,
            "--data_dir", str(data), "--background_noise_dir", str(data / "_background_noise_"),
            "--engine", "espeak", "--synthesized_clips", "6", "--near_misses", "2",
            "--near_miss_clips", "3", "--negative_clips", "40", "--stream_minutes", "1",
            "--hard_negative_minutes", "1", "--steps", "20", "--batch_size", "32", "--jobs", "1",
            *extra]


def test_the_whole_command_writes_a_detector_that_scores_a_stream_with_no_other_flag(tiny, tmp_path,
                                                                                 capsys):
    import test_streaming_accuracy
    import train_wake_word
    out = tmp_path / "happy"
    lines = []
    flags = wake_word_flags(tiny, out)
    train_wake_word.main(train_wake_word.build_parser().parse_args(flags), lines.append)
    detector = out / "happy.tflite"
    payload = metadata.read_metadata(detector.read_bytes())
    threshold = json.loads((out / "threshold.json").read_text())
    assert payload["labels"] == ["_silence_", "_unknown_", "happy"]
    assert payload["threshold"] == threshold["threshold"] and threshold["false_alarms"] == 0
    report = json.loads((out / "happy_report.json").read_text())
    assert report["tflm_arena_bytes"] > 0 and "largest difference" in report["tflm"]
    assert any(line.startswith("[8/8] detector") for line in lines)
    # the head learned every window of a minute of the mining stream, one every 30 ms
    windows = (60 - 1) * 1000 // 30 + 1
    with np.load(out / "hard_negatives.npz") as saved:
        assert len(saved["embeddings"]) == windows
    assert any(line.endswith(f"and {windows} windows of the mining stream") for line in lines)
    # the threshold's negative stream is not the mined one
    run = stages.Run(stages.Settings.from_flags(train_wake_word.build_parser().parse_args(flags)),
                     str(out), 1)
    chosen_on = test_recordings.read_recording(str(out / "negative_stream.wav"), 16000)
    mined = run.mining_stream(16000, 16000)
    assert len(mined) == len(chosen_on) and not np.array_equal(mined, chosen_on)
    # the file alone: test_streaming_accuracy.py takes its settings and threshold from it
    positives = wake_word_data.load(sorted(map(str, (out / "synthesized" / "happy").glob("*.wav"))),
                                    16000, 16000)
    mixing = test_recordings.Mixing(16000, 1000, 30, 2000, 0.0, 0.1, (-6.0, 0.0), 1)
    audio, truth = test_recordings.generate(
        test_recordings.Words({"happy": positives}, positives[:0]), [], mixing)
    (tmp_path / "stream.wav").write_bytes(test_recordings.wav_bytes(audio, 16000))
    test_recordings.write_ground_truth(str(tmp_path / "truth.txt"), truth)
    capsys.readouterr()
    test_streaming_accuracy.main(test_streaming_accuracy.build_parser().parse_args(
        ["--tflite_path", str(detector), "--wav", str(tmp_path / "stream.wav"),
         "--ground_truth", str(tmp_path / "truth.txt")]))
    assert f"At threshold {payload['threshold']:g}:" in capsys.readouterr().out
    # started again: every stage is done; without its last two outputs, only those are redone
    (out / "threshold.json").unlink()
    (out / "happy_report.json").unlink()
    again = []
    train_wake_word.main(train_wake_word.build_parser().parse_args(flags), again.append)
    assert [line for line in again if line.startswith("[")][:6] == [
        f"[{n}/8] {name}: done ({out / done})" for n, name, done in (
            (1, "near misses", "near_misses.json"), (2, "synthesis", "synthesized.json"),
            (3, "examples", "negative_stream.wav"), (4, "hard negatives", "hard_negatives.npz"),
            (5, "head", "head/head.ckpt.index"), (6, "conversion", "detector_no_threshold.tflite"))]
    assert json.loads((out / "threshold.json").read_text()) == threshold
    with pytest.raises(cli.UsageError, match="holds a run with other flags \\(--steps\\)"):
        train_wake_word.main(train_wake_word.build_parser().parse_args(flags + ["--steps", "21"]))


def test_hard_negatives_are_mined_from_other_words_of_other_speakers_than_the_threshold_stream(
        tiny, tmp_path):
    import train_wake_word
    flags = wake_word_flags(tiny, tmp_path / "bed", "--wake_word", "bed")
    run = stages.Run(stages.Settings.from_flags(train_wake_word.build_parser().parse_args(flags)),
                     str(tmp_path / "bed"), 1)
    examples, mined, stream = run.negative_sources()
    assert mined and not set(mined) & set(examples)
    words = {os.path.basename(os.path.dirname(path)) for path in mined + stream}
    assert words == {"yes", "no", "up", "dog"}  # never the wake word

    def speakers(paths):
        return {os.path.basename(path).split("_nohash_")[0] for path in paths}
    assert speakers(stream) and not speakers(mined) & speakers(stream)
    assert not any(map(wake_word_data.stream_speaker, mined))


def run_script(*flags) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train_wake_word.py"), *map(str, flags)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_bad_inputs_are_one_line_each(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_audio = tmp_path / "not_audio"
    not_audio.mkdir()
    (not_audio / "take1.wav").write_text("these are notes, not a recording")
    cases = [(["--wake_word", "日本"], "--wake_word '日本': the synthesizers cannot speak it"),
             (["--wake_word", "hey jarvis"], "the synthesizers cannot speak it"),
             (["--recordings", empty], f"--recordings {empty} is empty"),
             (["--recordings", not_audio], f"--recordings {not_audio / 'take1.wav'}: unreadable audio"),
             (["--recordings", tmp_path / "nowhere"], "is not a folder"),
             (["--backbone", f"{tmp_path / 'nowhere'} --model_architecture ds_cnn"],
              f"--backbone {tmp_path / 'nowhere'}: no such checkpoint")]
    for extra, message in cases:
        result = run_script(*wake_word_flags(tiny, tmp_path / "out"), *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_threshold_chooser_gives_the_false_alarm_rate_it_promises_on_a_synthetic_stream():
    rng = np.random.default_rng(0)
    hours, stride_ms = 10, 30.0

    def stream():
        segments = hours * 3600  # a score per second of speech, the wake word's mostly low
        count = int(segments * 1000 / stride_ms)
        scores = np.zeros((count, 3))
        scores[:, 2] = np.repeat(rng.beta(2, 6, segments), 1000 / stride_ms + 1)[:count]
        scores[:, 1] = 1 - scores[:, 2]
        times = np.arange(count) * stride_ms
        return detection.smooth(times, scores, ["_silence_", "_unknown_", "happy"], stride_ms, 500)

    chosen_on, measured_on = stream(), stream()
    suppression = wake_word_data.detection_defaults().suppression_ms
    for per_hour in (0.5, 1.0, 3.0):
        threshold, count = wake_word_data.choose_threshold(chosen_on, hours * 3600, per_hour,
                                                           suppression)
        assert count == len(chosen_on.detections(threshold, suppression)) <= per_hour * hours
        scores = chosen_on.top_score
        lower = np.max(scores[(scores >= 0) & (scores < threshold)])
        assert len(chosen_on.detections(float(lower), suppression)) > per_hour * hours
        rate = len(measured_on.detections(threshold, suppression)) / hours
        assert per_hour / 4 <= rate <= 4 * per_hour  # on a stream it was not chosen on


def test_near_misses_sound_alike_and_are_no_homophones():
    engine = synthesis_engines.EspeakEngine()
    assert near_misses.edit_distance(["b", "ɛ", "d"], ["b", "ɜː", "d"]) == 1
    assert near_misses.edit_distance([], ["a", "b"]) == 2
    chosen = near_misses.choose("bed", ["bird", "bed", "unbed", "dog", "bread"], 10, engine.phonemes)
    words = [word for word, _ in chosen]
    assert set(words[:2]) == {"bird", "bread"}  # real words first
    assert "bed" not in words and "dog" not in words[:5]
    target = engine.phonemes("bed")
    for word, distance in chosen:
        assert distance == near_misses.edit_distance(target, engine.phonemes(word)) >= 1
    assert "unbed" not in words  # it holds the word itself


def test_a_backbone_that_can_stream_makes_a_streaming_detector():

    from kws import features
    from kws.models import registry
    from kws.runtime import tflite_model
    from kws.wake_word import model as wake_word_model
    settings = features.prepare_model_settings(16000, 1000, 40, 20, 10)
    backbone = wake_word_model.Backbone(
        registry.create_model(settings, "gru", [2, 4], label_count=5), settings, "gru", [2, 4],
        "untrained")
    head = wake_word_model.head_model(backbone.embedding.output_shape[-1], 8, 0)
    detector = wake_word_model.detector(backbone, head)
    clips = np.random.default_rng(0).normal(0, 3000, (20, 16000)).astype(np.int16)
    labels = ["_silence_", "_unknown_", "hello"]
    content, form = wake_word_model.convert_detector(detector, settings, "gru", labels, clips)
    assert form == "streaming (1 frame(s) per call)"
    assert metadata.read_metadata(content)["input"]["streaming"]
    model = tflite_model.TFLiteModel(content=content)
    model.check_settings(settings, labels)
    fingerprints = features.Fingerprinter(settings)(clips[:3])
    np.testing.assert_allclose(model.predict(fingerprints),
                               wake_word_model.predict(detector, fingerprints), atol=0.05)
