"""Tests of synthesis and synthesize_dataset.py: format, layout, determinism, noise, flags."""
import os
import re
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from kws import cli
from kws.data import synthesis, synthesis_engines

from conftest import ROOT

REPO = str(ROOT)
WORDS = ["sheila", "visual"]
CLIPS_PER_WORD = 4
FILE_NAME = re.compile(r"[0-9a-f]{8}_nohash_[0-9]+\.wav")


def read_tree(root):
    """{relative path: bytes} of every file under root."""
    tree = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                tree[os.path.relpath(path, root)] = f.read()
    return tree


def write_test_wav(path, rate=16000, seconds=2):
    """A small noise WAV file."""
    samples = np.random.default_rng(0).integers(-1000, 1000, rate * seconds).astype("<i2")
    with wave.open(path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small data set made with one process."""
    output_dir = str(tmp_path_factory.mktemp("synthetic"))
    summary = synthesis.synthesize(output_dir, WORDS, CLIPS_PER_WORD, seed=0, jobs=1)
    return output_dir, summary


def test_clips_are_one_second_16khz_mono_int16_speech(dataset):
    output_dir, _ = dataset
    for word in WORDS:
        for name in os.listdir(os.path.join(output_dir, word)):
            with wave.open(os.path.join(output_dir, word, name), "rb") as wav:
                assert wav.getframerate() == 16000
                assert wav.getnchannels() == 1
                assert wav.getsampwidth() == 2
                assert wav.getnframes() == 16000
                samples = np.frombuffer(wav.readframes(16000), dtype="<i2")
            assert np.abs(samples).max() > 32767 * 10 ** (-31 / 20)
            assert np.count_nonzero(samples) > 1000


def test_layout_and_file_names(dataset):
    output_dir, summary = dataset
    assert sorted(os.listdir(output_dir)) == sorted(WORDS + ["_background_noise_"])
    for word in WORDS:
        names = os.listdir(os.path.join(output_dir, word))
        assert len(names) == CLIPS_PER_WORD
        assert all(FILE_NAME.fullmatch(name) for name in names), names
    assert summary.clips_per_word == {word: CLIPS_PER_WORD for word in WORDS}
    assert summary.written == len(WORDS) * CLIPS_PER_WORD


def test_speakers_are_shared_across_words(dataset):
    output_dir, summary = dataset
    speakers = [{name.split("_nohash_")[0] for name in os.listdir(os.path.join(output_dir, word))}
                for word in WORDS]
    assert set.intersection(*speakers)
    assert len(set.union(*speakers)) == summary.speakers <= CLIPS_PER_WORD


def test_clip_numbers_count_a_speakers_clips_of_a_word(dataset):
    output_dir, _ = dataset
    for word in WORDS:
        numbers = {}
        for name in os.listdir(os.path.join(output_dir, word)):
            speaker, n = name[:-len(".wav")].split("_nohash_")
            numbers.setdefault(speaker, []).append(int(n))
        assert all(sorted(ns) == list(range(len(ns))) for ns in numbers.values())


def test_same_seed_gives_same_bytes_whatever_the_jobs(dataset, tmp_path):
    output_dir, _ = dataset
    synthesis.synthesize(str(tmp_path), WORDS, CLIPS_PER_WORD, seed=0, jobs=2)
    assert read_tree(str(tmp_path)) == read_tree(output_dir)


def test_other_seed_gives_other_speakers_and_clips():
    engine = synthesis_engines.EspeakEngine()
    plans = []
    for seed in (0, 1):
        speakers = synthesis.draw_speakers(engine, CLIPS_PER_WORD, seed)
        plans.append(synthesis.plan_clips("out", "espeak", "yes", CLIPS_PER_WORD,
                                          speakers, seed))
    assert {clip.path for clip in plans[0]}.isdisjoint(clip.path for clip in plans[1])
    assert {clip.seed for clip in plans[0]}.isdisjoint(clip.seed for clip in plans[1])


def test_restart_writes_only_missing_clips_identically(dataset, tmp_path):
    output_dir, _ = dataset
    shutil.copytree(output_dir, tmp_path / "out")
    removed = os.path.join("visual", sorted(os.listdir(tmp_path / "out" / "visual"))[-1])
    os.remove(tmp_path / "out" / removed)
    summary = synthesis.synthesize(str(tmp_path / "out"), WORDS, CLIPS_PER_WORD,
                                   seed=0, jobs=1)
    assert summary.written == 1
    assert read_tree(str(tmp_path / "out")) == read_tree(output_dir)


def test_background_noise_is_generated_without_background_dir(dataset):
    output_dir, _ = dataset
    noise_dir = os.path.join(output_dir, "_background_noise_")
    assert sorted(os.listdir(noise_dir)) == ["pink_noise.wav", "white_noise.wav"]
    for name in os.listdir(noise_dir):
        with wave.open(os.path.join(noise_dir, name), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() == 60 * 16000


def test_background_dir_is_copied(tmp_path):
    background_dir = tmp_path / "noise"
    background_dir.mkdir()
    write_test_wav(str(background_dir / "hum.wav"))
    output_dir = tmp_path / "out"
    synthesis.synthesize(str(output_dir), ["yes"], 1, seed=0,
                         background_dir=str(background_dir), jobs=1)
    assert os.listdir(output_dir / "_background_noise_") == ["hum.wav"]
    assert (output_dir / "_background_noise_" / "hum.wav").read_bytes() == \
        (background_dir / "hum.wav").read_bytes()


def test_background_dir_of_wrong_rate_is_refused(tmp_path):
    write_test_wav(str(tmp_path / "hum.wav"), rate=8000)
    with pytest.raises(cli.UsageError, match="8000 Hz"):
        synthesis.synthesize(str(tmp_path / "out"), ["yes"], 1,
                             background_dir=str(tmp_path), jobs=1)


@pytest.mark.parametrize("flags", [
    ["--clips_per_word", "0"],
    ["--words", "yes,Bad/Word"],
    ["--seed", "-1"],
    ["--engine", "festival"],
    ["--background_dir", "/nonexistent/noise"],
])
def test_bad_flags_exit_2_with_one_line(flags, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "synthesize_dataset.py"),
         "--output_dir", str(tmp_path / "out")] + flags,
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "error" in result.stderr
