"""Tests of where data comes from: every audio format, several --data_dir sources,
--background_noise_dir, the decoded-clip cache, and empty partitions in every script."""
import json

import numpy as np
import pytest
import soundfile

import test_tflite
from kws import cli, features, vocabulary
from kws.cli import UsageError
from kws.data import data_split, speech_commands
from kws.export import quantization
from kws.models import registry
from kws.training import checkpoints

from conftest import (SAMPLE_RATE, TINY_FEATURE_FLAGS, WANTED, fake_speakers, load_script,
                      make_speech_commands, processor)

test_py = load_script("test")

FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]

COMPRESSED = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS")}


def recode(folder, extension: str) -> int:
    """Rewrites every .wav under folder's word folders as extension; returns how many."""
    count = 0
    for path in sorted(folder.glob("*/*.wav")):
        if path.parent.name == speech_commands.BACKGROUND_NOISE_DIR_NAME:
            continue
        audio, rate = soundfile.read(path, dtype="int16")
        file_format, subtype = COMPRESSED[extension]
        soundfile.write(path.with_suffix(extension), audio, rate, format=file_format, subtype=subtype)
        path.unlink()
        count += 1
    return count


@pytest.mark.parametrize("extension", sorted(COMPRESSED))
def test_every_audio_format_is_data(tmp_path, extension):
    data = make_speech_commands(tmp_path / "data")
    recode(data, extension)
    audio = processor(data, audio_cache_dir="")
    entries = [entry for partition in speech_commands.PARTITIONS for entry in audio.data_index[partition]]
    keyword_files = [path for path in data.glob(f"*/*{extension}") if path.parent.name in WANTED]
    assert sum(label > vocabulary.UNKNOWN_WORD_INDEX for _, label in entries) == len(keyword_files)
    assert all(path.endswith(extension) for path, _ in entries if path)
    assert np.abs(audio.audio["training"][:-1]).max() > 1000, "decoded to real samples"


def test_load_evaluation_folder_reads_compressed_clips(tmp_path):
    folder = make_speech_commands(tmp_path / "eval", words=("yes",), unknown_words=(),
                                  speakers=fake_speakers((2, 0, 0)), background=False)
    recode(folder, ".opus")
    clips, labels, paths = speech_commands.load_evaluation_folder(
        str(folder), ["_silence_", "_unknown_", "yes"], processor_settings())
    assert len(clips) == 4 and set(labels) == {2} and all(p.endswith(".opus") for p in paths)


def processor_settings():
    return features.prepare_model_settings(SAMPLE_RATE, 1000, 40, 20, 10)


def test_decoded_clips_are_cached_and_a_changed_file_decodes_again(tmp_path, capsys):
    data = make_speech_commands(tmp_path / "data")
    recode(data, ".flac")
    cache = tmp_path / "cache"
    first = processor(data, audio_cache_dir=str(cache))
    assert "Decoded" in capsys.readouterr().out
    second = processor(data, audio_cache_dir=str(cache))
    out = capsys.readouterr().out
    assert "from the cache" in out and "Decoded" not in out
    for partition in speech_commands.PARTITIONS:
        np.testing.assert_array_equal(first.audio[partition], second.audio[partition])
    processor(data, audio_cache_dir=str(cache), unknown_percentage=50, seed=3)
    assert "Decoded" not in capsys.readouterr().out, "another selection of the same folders is cached"
    changed = sorted(data.glob("yes/*.flac"))[0]
    soundfile.write(changed, np.zeros(SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE, format="FLAC")
    processor(data, audio_cache_dir=str(cache))
    assert "Decoded 24 clips" in capsys.readouterr().out, "only the changed file's folder decodes again"
    assert not list(cache.glob(".partial-*")), "no half-written entries are left"


def test_wav_only_data_is_not_cached(data_dir, tmp_path):
    processor(data_dir, audio_cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_several_data_dirs_are_merged_and_split_by_the_same_rule(tmp_path):
    real = make_speech_commands(tmp_path / "real", words=WANTED, unknown_words=("cat",),
                                background=False)
    extra = make_speech_commands(tmp_path / "synth", words=("yes",), unknown_words=("dog",),
                                 speakers=fake_speakers((3, 1, 1)), clips_per_speaker=1)
    merged = processor(f"{real},{extra}", unknown_percentage=100)
    alone = processor(str(real), unknown_percentage=100)
    paths = {path for partition in speech_commands.PARTITIONS for path, _ in merged.data_index[partition]}
    assert any(path.startswith(str(extra)) for path in paths)
    assert any("/dog/" in path for path in paths), "the second source's words join _unknown_"
    for partition in speech_commands.PARTITIONS:
        for path, _ in merged.data_index[partition]:
            if path:
                assert data_split.which_set(path, 10, 10) == partition
    assert merged.set_size("training") > alone.set_size("training")
    assert merged.background_data and not alone.background_data, \
        "each source's _background_noise_ is used"


def test_background_noise_dir(tmp_path):
    data = make_speech_commands(tmp_path / "data", background=False)
    noise = make_speech_commands(tmp_path / "noise_source", words=(), unknown_words=())
    audio = processor(data, background_noise_dir=str(noise / "_background_noise_"))
    assert len(audio.background_data) == 2
    with pytest.raises(UsageError, match="--background_noise_dir .* holds no audio files"):
        processor(data, background_noise_dir=str(tmp_path))


def test_a_missing_data_dir_of_a_list_is_named(data_dir, tmp_path):
    with pytest.raises(UsageError, match=f"--data_dir {tmp_path / 'nowhere'} is not a folder"):
        processor(f"{data_dir},{tmp_path / 'nowhere'}")


# ---------------------------------------------------------------- empty partitions


def everything_in_testing(tmp_path):
    """A data set whose every clip hashes to the testing partition."""
    return make_speech_commands(tmp_path / "data", words=("yes", "no"), unknown_words=("cat",),
                                speakers=fake_speakers((0, 0, 4)))


def tiny_dnn_tflite(tmp_path) -> str:
    settings = features.prepare_model_settings(SAMPLE_RATE, 1000, 40, 20, 10)
    model = registry.create_model(settings, "dnn", (8,), label_count=4)
    path = str(tmp_path / "dnn.tflite")
    cli.write_atomically(path, quantization.to_tflite(model, FLOAT32, None))
    return path


def test_test_tflite_skips_an_empty_partition(tmp_path, capsys):
    data = everything_in_testing(tmp_path)
    output = tmp_path / "figures.json"
    test_tflite.main(test_tflite.build_parser().parse_args(
        ["--tflite_path", tiny_dnn_tflite(tmp_path), "--data_dir", str(data), "--data_url", "",
         "--wanted_words", "yes,no", "--output_json", str(output)] + TINY_FEATURE_FLAGS))
    out = capsys.readouterr().out
    assert "The validation partition of --data_dir" in out and "is empty: skipped" in out
    assert sorted(json.load(open(output))) == ["testing"]


def test_test_py_with_both_partitions_empty_is_a_usage_error(tmp_path):
    data = make_speech_commands(tmp_path / "data", words=("yes", "no"), unknown_words=("cat",),
                                speakers=fake_speakers((4, 0, 0)))
    settings = features.prepare_model_settings(SAMPLE_RATE, 1000, 40, 20, 10)
    checkpoint = str(tmp_path / "ckpt" / "dnn")
    checkpoints.save_weights_atomically(registry.create_model(settings, "dnn", (8,), label_count=4),
                                        checkpoint)
    args = test_py.build_parser().parse_args(
        ["--model_architecture", "dnn", "--model_size_info", "8", "--checkpoint", checkpoint,
         "--data_dir", str(data), "--data_url", "", "--wanted_words", "yes,no"] + TINY_FEATURE_FLAGS)
    with pytest.raises(UsageError, match="the validation and testing partitions are empty"):
        test_py.main(args)
