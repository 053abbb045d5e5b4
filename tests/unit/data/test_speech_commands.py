"""Tests of input_data.py: split, index, loading, augmentation, fingerprints, download.

Everything runs on small WAV folders generated in tmp_path; only
test_dev_test_set_loads_completely reads the real clips of ../shared.
"""
import itertools
import math
import os
import tarfile
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kws import cli, features, graph_features, tf_env, vocabulary
from kws.cli import UsageError
from kws.data import audio_io, augmentation, data_split, download, speech_commands
from kws.features import prepare_model_settings

from conftest import (SAMPLE_RATE, UNKNOWN, WANTED, ds_cnn_settings, fake_speakers,
                      google_which_set, make_speech_commands, processor, write_wav)

DS_CNN = ds_cnn_settings()


@pytest.fixture(scope="module")
def quiet_data_dir(tmp_path_factory):
    """The same layout without _background_noise_."""
    return make_speech_commands(tmp_path_factory.mktemp("quiet") / "speech", WANTED, UNKNOWN,
                                background=False)


def partition_of_files(data_dir, validation=10, testing=10):
    """{path: partition} of every word clip on disk, by the rule written out in conftest."""
    return {str(path): google_which_set(path.name, validation, testing)
            for path in Path(data_dir).glob("*/*.wav") if path.parent.name != "_background_noise_"}


# ---------------------------------------------------------------- the split rule

@pytest.mark.parametrize("name, validation, testing, expected", [
    # Google's formula: sha1(name up to _nohash_) % 2**27 * 100 / (2**27 - 1); the value is noted.
    ("0cb74144_nohash_0.wav", 10, 10, "testing"),       # 19.307
    ("0cb74144_nohash_3.wav", 20, 20, "validation"),    # 19.307
    ("28bea188_nohash_3.wav", 10, 10, "validation"),    # 6.814
    ("28bea188_nohash_0.wav", 5, 5, "testing"),         # 6.814
    ("71f87022_nohash_1.wav", 10, 10, "testing"),       # 17.990
    ("71f87022_nohash_1.wav", 5, 5, "training"),        # 17.990
    ("295d3f7d_nohash_0.wav", 10, 10, "training"),      # 63.977
    ("29c666f3_nohash_2.wav", 10, 10, "validation"),    # 0.920
    ("some/dir/yes/29c666f3_nohash_2.wav", 0.5, 10, "testing"),
])
def test_which_set_pinned_names(name, validation, testing, expected):
    assert google_which_set(name, validation, testing) == expected
    assert data_split.which_set(name, validation, testing) == expected


def test_which_set_matches_formula_and_keeps_speakers_together():
    rng = np.random.default_rng(0)
    for _ in range(300):
        speaker = "%08x" % rng.integers(0, 2**32)
        validation, testing = rng.choice([0, 5, 10, 20, 33.3]), rng.choice([0, 10, 25])
        partitions = set()
        for suffix in ("_nohash_0.wav", "_nohash_1.wav", "_nohash_12.wav"):
            for folder in ("yes", "cat"):
                got = data_split.which_set(f"/data/{folder}/{speaker}{suffix}", validation, testing)
                assert got == google_which_set(speaker + suffix, validation, testing)
                partitions.add(got)
        assert len(partitions) == 1, speaker


def test_index_puts_each_file_in_its_partition(data_dir):
    audio = processor(data_dir)
    expected = partition_of_files(data_dir)
    seen = set()
    for partition in speech_commands.PARTITIONS:
        for path, label in audio.data_index[partition]:
            if path:
                assert expected[path] == partition, path
                folder = Path(path).parent.name
                assert label == (WANTED.index(folder) + 2 if folder in WANTED
                                 else vocabulary.UNKNOWN_WORD_INDEX)
                seen.add(path)
    wanted_files = {path for path in expected if Path(path).parent.name in WANTED}
    assert wanted_files <= seen  # every wanted clip is used, each once per partition
    speakers = {}
    for path in seen:
        speakers.setdefault(Path(path).name.split("_nohash_")[0], set()).add(expected[path])
    assert all(len(partitions) == 1 for partitions in speakers.values())
    assert len({p for ps in speakers.values() for p in ps}) == 3  # the fixture fills all three


# ---------------------------------------------------------------- silence / unknown

@pytest.mark.parametrize("evaluation_partitions", ["fixed", "flags"])
@pytest.mark.parametrize("silence_percentage, unknown_percentage",
                         [(10, 10), (25, 50), (0, 0), (100, 100)])
def test_silence_and_unknown_proportions(data_dir, silence_percentage, unknown_percentage,
                                         evaluation_partitions):
    audio = processor(data_dir, silence_percentage=silence_percentage,
                      unknown_percentage=unknown_percentage,
                      evaluation_partitions=evaluation_partitions)
    on_disk = partition_of_files(data_dir)
    for partition in speech_commands.PARTITIONS:
        labels = [label for _, label in audio.data_index[partition]]
        wanted = sum(label >= 2 for label in labels)
        assert wanted == sum(p == partition and Path(f).parent.name in WANTED
                             for f, p in on_disk.items())
        available = sum(p == partition and Path(f).parent.name in UNKNOWN for f, p in on_disk.items())
        silence, unknown = silence_percentage, unknown_percentage
        if partition != "training" and evaluation_partitions == "fixed":
            silence, unknown = (data_split.EVALUATION_SILENCE_PERCENTAGE,
                                data_split.EVALUATION_UNKNOWN_PERCENTAGE)
        assert labels.count(vocabulary.SILENCE_INDEX) == math.ceil(wanted * silence / 100)
        assert labels.count(vocabulary.UNKNOWN_WORD_INDEX) == min(
            available, math.ceil(wanted * unknown / 100))
        assert all(path == "" for path, label in audio.data_index[partition]
                   if label == vocabulary.SILENCE_INDEX)
        assert audio.set_size(partition) == len(labels)


def test_evaluation_partitions_are_the_same_clips_whatever_the_training_flags(data_dir):
    runs = [processor(data_dir, seed=seed, unknown_percentage=unknown, silence_percentage=silence)
            for seed, unknown, silence in [(1, 10, 10), (2, 25, 10), (3, 50, 20),
                                           (speech_commands.RANDOM_SEED, 10, 10)]]
    for partition in ("validation", "testing"):
        first_fingerprints, first_labels = runs[0].fingerprints(partition)
        for other in runs[1:]:
            assert other.data_index[partition] == runs[0].data_index[partition]
            fingerprints, labels = other.fingerprints(partition)
            np.testing.assert_array_equal(labels, first_labels)
            np.testing.assert_array_equal(fingerprints, first_fingerprints)
    assert runs[0].data_index["training"] != runs[1].data_index["training"]
    arm = [processor(data_dir, seed=seed, evaluation_partitions="flags") for seed in (1, 2)]
    assert arm[0].data_index["validation"] != arm[1].data_index["validation"]


def test_unknown_samples_are_drawn_afresh_from_every_unknown_clip(data_dir):
    audio = processor(data_dir, unknown_percentage=10)
    unknown_clips = {tuple(audio.audio["training"][row][:200]) for row in audio.unknown_rows}
    assert len(audio.unknown_rows) == len({path for path, label in audio.data_index["training"]} |
                                          set(audio.unknown_pool)) - len(
        {path for path, label in audio.data_index["training"] if label != vocabulary.UNKNOWN_WORD_INDEX})
    seen = set()
    for _, rows, labels in itertools.islice(audio.training_rows(8), 200):
        seen.update(int(row) for row in rows[labels == vocabulary.UNKNOWN_WORD_INDEX])
    assert seen == set(int(row) for row in audio.unknown_rows)  # every unknown clip, not a subset
    assert len(seen) > sum(label == vocabulary.UNKNOWN_WORD_INDEX
                           for _, label in audio.data_index["training"])
    assert len(unknown_clips) > 1
    once = processor(data_dir, unknown_percentage=10, unknown_draw="once")
    seen_once = set()
    for _, rows, labels in itertools.islice(once.training_rows(8), 200):
        seen_once.update(int(row) for row in rows[labels == vocabulary.UNKNOWN_WORD_INDEX])
    assert seen_once == {int(row) for row, label in zip(once.rows["training"], once.labels["training"])
                         if label == vocabulary.UNKNOWN_WORD_INDEX}


def test_unknown_draw_is_a_function_of_seed_and_step(data_dir):
    first, again = processor(data_dir, seed=4), processor(data_dir, seed=4)
    resumed = next(first.training_rows(8, start_step=37))
    np.testing.assert_array_equal(resumed[1], next(itertools.islice(again.training_rows(8), 37, None))[1])


def test_index_is_deterministic_per_seed(data_dir):
    first, again, other = processor(data_dir, seed=5), processor(data_dir, seed=5), processor(data_dir, seed=6)
    assert first.data_index == again.data_index

    def unknowns(audio):
        return sorted(path for path, label in audio.data_index["training"]
                      if label == vocabulary.UNKNOWN_WORD_INDEX)

    assert unknowns(first) != unknowns(other)
    assert len(unknowns(first)) == len(unknowns(other))


def test_negative_seed_is_a_usage_error(data_dir):
    with pytest.raises(UsageError, match="--seed"):
        processor(data_dir, seed=-1)


# ---------------------------------------------------------------- fingerprints

def sample_clips():
    """Deterministic int16 clips: silence, noise, speech-like bursts, a half-silent clip."""
    rng = np.random.default_rng(1)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    burst = np.exp(-((t - 0.4) / 0.1) ** 2) * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))
    clips = [
        np.zeros(SAMPLE_RATE),
        rng.normal(0, 0.1, SAMPLE_RATE),
        rng.uniform(-1, 1, SAMPLE_RATE),
        0.4 * burst + rng.normal(0, 0.02, SAMPLE_RATE),
        np.where(t < 0.5, 0, rng.normal(0, 0.05, SAMPLE_RATE)),
        rng.normal(0, 0.001, SAMPLE_RATE),
    ]
    return np.stack([np.clip(np.round(c * 32767), -32768, 32767) for c in clips]).astype(np.int16)


FINGERPRINT_SETTINGS = [(30, 10, 40), (40, 20, 10), (40, 40, 10), (25, 10, 13), (20, 7.5, 20)]


@pytest.mark.parametrize("window_size_ms, window_stride_ms, dct_coefficient_count",
                         FINGERPRINT_SETTINGS)
def test_fingerprinter_equals_tf_ops(window_size_ms, window_stride_ms, dct_coefficient_count):
    """The numpy MFCC is TF's arithmetic (float64, the power spectrum rounded to float32):
    equal to the ops' float32 output to float32's resolution."""
    settings = prepare_model_settings(SAMPLE_RATE, 1000, window_size_ms, window_stride_ms,
                                      dct_coefficient_count)
    clips = sample_clips()
    fingerprints = features.Fingerprinter(settings)(clips, batch_size=4)
    assert fingerprints.shape == (len(clips), settings.fingerprint_size)
    assert fingerprints.dtype == np.float32
    for clip, fingerprint in zip(clips, fingerprints):
        reference = graph_features.reference_fingerprint(clip.astype(np.float32) / 32768.0, settings)
        assert reference.shape == fingerprint.shape
        scale = np.abs(reference).max()
        np.testing.assert_allclose(fingerprint, reference, rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("window_size_ms, window_stride_ms, dct_coefficient_count",
                         FINGERPRINT_SETTINGS)
def test_graph_fingerprints_equal_tf_ops(window_size_ms, window_stride_ms, dct_coefficient_count):
    """The training pipeline's MFCC, a float32 tf.signal graph: equal to the ops' to 1e-5."""
    tf = tf_env.import_tensorflow()
    settings = prepare_model_settings(SAMPLE_RATE, 1000, window_size_ms, window_stride_ms,
                                      dct_coefficient_count)
    audio = sample_clips().astype(np.float32) / 32768.0
    fingerprints = graph_features.graph_fingerprints(tf.constant(audio), settings).numpy()
    for clip, fingerprint in zip(audio, fingerprints):
        reference = graph_features.reference_fingerprint(clip, settings)
        scale = np.abs(reference).max()
        np.testing.assert_allclose(fingerprint, reference, rtol=0, atol=1e-5 * scale)


def test_fingerprinter_is_independent_of_batching_and_input_type():
    fingerprinter = features.Fingerprinter(DS_CNN)
    clips = sample_clips()
    whole = fingerprinter(clips)
    np.testing.assert_allclose(fingerprinter(clips, batch_size=2), whole, rtol=0, atol=1e-4)
    np.testing.assert_allclose(fingerprinter(clips[2:3]), whole[2:3], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(fingerprinter(clips.astype(np.float32) / 32768.0), whole)
    assert fingerprinter(clips[:0]).shape == (0, DS_CNN.fingerprint_size)


# ---------------------------------------------------------------- augmentation

def test_time_shift_never_exceeds_the_flag(data_dir):
    audio = processor(data_dir, time_shift_ms=50, background_frequency=0, background_volume=0)
    shift, = [step.samples for step in audio.transforms if isinstance(step, augmentation.TimeShift)]
    assert shift == 800
    clips = np.zeros((500, SAMPLE_RATE), dtype=np.int16)
    clips[:, 8000] = 16384
    out = audio.augment(clips, np.full(500, 2), np.random.default_rng(3))
    positions = np.argmax(out, axis=1)
    moved = positions - 8000
    assert np.all(np.abs(moved) <= shift)
    assert np.all(out.max(axis=1) == 0.5) and np.all(np.count_nonzero(out, axis=1) == 1)
    assert moved.min() < -shift // 2 and moved.max() > shift // 2  # it does shift, both ways


def test_augmented_audio_stays_in_range(data_dir):
    audio = processor(data_dir, background_frequency=1, background_volume=1)
    clips = np.full((64, SAMPLE_RATE), 32767, dtype=np.int16)
    clips[::2] = -32768
    out = audio.augment(clips, np.array([0, 2] * 32), np.random.default_rng(0))
    assert out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1
    for (audio_batch, _), _ in zip(audio.training_batches(32), range(3)):
        assert audio_batch.min() >= -1 and audio_batch.max() <= 1


def test_no_augmentation_gives_clean_clips_and_noisy_silence(data_dir):
    audio = processor(data_dir, time_shift_ms=0, background_frequency=0, background_volume=0,
                      silence_percentage=50)
    batch, labels = next(audio.training_batches(60))
    silence = labels == vocabulary.SILENCE_INDEX
    assert silence.any() and (~silence).any()
    clean = {path: audio_io.read_wav(path, SAMPLE_RATE, SAMPLE_RATE)
             for path in [path for path, _ in audio.data_index["training"] if path] + audio.unknown_pool}
    # Which clip each row is: find it among the clean clips.
    clean_rows = {clip.tobytes(): clip for clip in clean.values()}
    for row in np.flatnonzero(~silence):
        as_int = np.round(batch[row] * 32768).astype(np.int16)
        assert as_int.tobytes() in clean_rows
        np.testing.assert_array_equal(batch[row], as_int.astype(np.float32) / 32768)
    # Silence samples are the only ones with noise, when there is noise to use.
    assert all(np.abs(batch[row]).max() > 0 for row in np.flatnonzero(silence))


def test_silence_stays_silent_without_background(quiet_data_dir):
    audio = processor(quiet_data_dir, background_frequency=1, background_volume=1,
                      silence_percentage=50)
    assert audio.background_data == []
    batch, labels = next(audio.training_batches(60))
    silence = labels == vocabulary.SILENCE_INDEX
    assert silence.any()
    assert np.all(batch[silence] == 0)


def test_training_batches_are_deterministic_and_resumable(data_dir):
    audio = processor(data_dir, seed=11)
    count = len(audio.rows["training"])
    batch_size = 7  # does not divide count: batches straddle epochs
    assert count % batch_size
    stream = audio.training_batches(batch_size)
    batches = [next(stream) for _ in range(2 * count // batch_size + 2)]
    again = processor(data_dir, seed=11).training_batches(batch_size)
    for expected in batches[:3]:
        got = next(again)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    for k in (1, count // batch_size, len(batches) - 1):
        got = next(audio.training_batches(batch_size, start_step=k))
        np.testing.assert_array_equal(got[0], batches[k][0])
        np.testing.assert_array_equal(got[1], batches[k][1])
    # One epoch of positions visits every training sample exactly once.
    epoch_labels = np.concatenate([labels for _, labels in batches])[:count]
    np.testing.assert_array_equal(np.sort(epoch_labels), np.sort(audio.labels["training"]))
    other = next(processor(data_dir, seed=12).training_batches(batch_size))
    assert not np.array_equal(other[0], batches[0][0])


def test_training_dataset_shapes_and_values(data_dir):
    audio = processor(data_dir, seed=3, augmentation=augmentation.Augmentation(augmentation_domain="audio"))
    dataset = audio.training_dataset(16)
    batches = list(dataset.take(2).as_numpy_iterator())
    assert len(batches) == 2
    for fingerprints, labels in batches:
        assert fingerprints.shape == (16, DS_CNN.fingerprint_size)
        assert fingerprints.dtype == np.float32
        assert labels.shape == (16,) and np.issubdtype(labels.dtype, np.integer)
        assert labels.min() >= 0 and labels.max() < len(audio.words_list)
    first_audio, first_labels = next(audio.training_batches(16))
    np.testing.assert_array_equal(batches[0][1], first_labels)
    tf = tf_env.import_tensorflow()
    expected = graph_features.graph_fingerprints(tf.constant(first_audio), DS_CNN).numpy()
    np.testing.assert_allclose(batches[0][0], expected, rtol=0, atol=1e-4)
    resumed = next(audio.training_dataset(16, start_step=1).as_numpy_iterator())
    np.testing.assert_allclose(resumed[0], batches[1][0], rtol=0, atol=1e-4)


def test_fingerprints_of_a_partition(data_dir):
    audio = processor(data_dir)
    fingerprints, labels = audio.fingerprints("validation")
    assert fingerprints.shape == (audio.set_size("validation"), DS_CNN.fingerprint_size)
    np.testing.assert_array_equal(labels, [label for _, label in audio.data_index["validation"]])
    assert audio.fingerprints("validation")[0] is fingerprints  # computed once
    # Silence samples are noise (there is a _background_noise_ folder), the same every time.
    silence = labels == vocabulary.SILENCE_INDEX
    zero = audio.fingerprinter(np.zeros((1, SAMPLE_RATE), dtype=np.int16))[0]
    assert silence.any() and not np.any(np.all(fingerprints[silence] == zero, axis=1))
    np.testing.assert_array_equal(processor(data_dir).fingerprints("validation")[0], fingerprints)


def test_no_training_samples_is_a_usage_error(tmp_path):
    data = make_speech_commands(tmp_path / "d", ["yes"], ["cat"], speakers=fake_speakers((0, 1, 1)),
                                background=False)
    audio = processor(data, wanted_words=["yes"])
    with pytest.raises(UsageError, match="no training samples"):
        audio.training_batches(4)
    with pytest.raises(UsageError, match="no training samples"):
        audio.training_dataset(4)


def test_from_flags(data_dir):
    parser = cli.make_parser("test")
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    args = parser.parse_args(["--data_url", "", "--data_dir", str(data_dir),
                              "--wanted_words", "yes,no", "--window_size_ms", "40",
                              "--window_stride_ms", "20", "--dct_coefficient_count", "10"])
    settings = features.settings_from_flags(args)
    assert settings.fingerprint_size == 490
    audio = speech_commands.AudioProcessor.from_flags(args, settings)
    assert audio.words_list == ["_silence_", "_unknown_", "yes", "no"]
    assert audio.set_size("training") > 0


# ---------------------------------------------------------------- evaluation folder

def test_load_evaluation_folder(tmp_path):
    folder = tmp_path / "eval"
    counts = {"_silence_": 2, "_unknown_": 3, "yes": 4, "no": 1}
    for label, count in counts.items():
        for n in range(count):
            write_wav(folder / label / f"{label}{n}.wav", np.full(SAMPLE_RATE, n + 1))
    write_wav(folder / "_background_noise_" / "noise.wav", np.ones(3 * SAMPLE_RATE))
    words = vocabulary.prepare_words_list(["yes", "no"])
    clips, labels, paths = speech_commands.load_evaluation_folder(str(folder), words, DS_CNN)
    assert clips.shape == (10, SAMPLE_RATE) and clips.dtype == np.int16
    assert paths == sorted(paths)
    for clip, label, path in zip(clips, labels, paths):
        assert words[label] == Path(path).parent.name
        assert clip[0] == int(Path(path).stem[-1]) + 1
    assert np.bincount(labels).tolist() == [2, 3, 4, 1]
    assert words.index("_silence_") == 0 and words.index("_unknown_") == 1


def test_evaluation_folder_with_an_unexpected_label(tmp_path):
    for label in ("yes", "maybe"):
        write_wav(tmp_path / "eval" / label / "a.wav", np.zeros(SAMPLE_RATE))
    with pytest.raises(UsageError, match="maybe"):
        speech_commands.load_evaluation_folder(str(tmp_path / "eval"),
                                          vocabulary.prepare_words_list(["yes"]), DS_CNN)
    with pytest.raises(UsageError, match="not a folder"):
        speech_commands.load_evaluation_folder(str(tmp_path / "nowhere"), ["yes"], DS_CNN)


def test_dev_test_set_loads_completely(shared_dir):
    folder = shared_dir / "data" / "speech_commands_test_v0.02_dev"
    words = vocabulary.prepare_words_list(vocabulary.DEFAULT_WANTED_WORDS.split(","))
    clips, labels, paths = speech_commands.load_evaluation_folder(str(folder), words, DS_CNN)
    assert len(paths) == len(labels) == len(clips) == 2738
    counts = np.bincount(labels, minlength=len(words))
    for index, word in enumerate(words):
        assert counts[index] == len(list((folder / word).glob("*.wav"))), word


# ---------------------------------------------------------------- bad audio

T = np.arange(SAMPLE_RATE) / SAMPLE_RATE
SINE = 0.5 * np.sin(2 * np.pi * 440 * T)


@pytest.mark.parametrize("rate, subtype, channels, tolerance", [
    (8000, "PCM_16", 1, 4), (44100, "PCM_16", 1, 4), (16000, "PCM_16", 2, 2),
    (16000, "PCM_U8", 1, 260), (16000, "PCM_24", 1, 1), (16000, "PCM_32", 1, 1),
    (16000, "FLOAT", 1, 1)])
def test_read_wav_converts_formats(tmp_path, rate, subtype, channels, tolerance):
    t = np.arange(rate) / rate
    audio = 0.5 * np.sin(2 * np.pi * 440 * t)
    if channels == 2:  # the mean of the channels is the sine
        other = 0.2 * np.sin(2 * np.pi * 1000 * t)
        audio = np.stack([audio + other, audio - other], axis=1)
    path = tmp_path / "clip.wav"
    soundfile.write(path, audio, rate, subtype=subtype)
    assert soundfile.info(str(path)).subtype == subtype
    clip = audio_io.read_wav(str(path), SAMPLE_RATE, SAMPLE_RATE)
    assert clip.dtype == np.int16 and clip.shape == (SAMPLE_RATE,)
    edge = 200 if rate != SAMPLE_RATE else 0  # resampling filters ring at the ends
    error = np.abs(clip.astype(np.float64) - SINE * 32768)[edge:SAMPLE_RATE - edge]
    assert error.max() <= tolerance


def test_read_wav_pads_and_crops(tmp_path):
    full = np.round(SINE * 32767).astype(np.int16)
    short = audio_io.read_wav(str(write_wav(tmp_path / "short.wav", full[:6000])),
                                SAMPLE_RATE, SAMPLE_RATE)
    np.testing.assert_array_equal(short[:6000], full[:6000])
    assert short.shape == (SAMPLE_RATE,) and not short[6000:].any()
    long_clip = np.concatenate([full, full[:8000]])
    cropped = audio_io.read_wav(str(write_wav(tmp_path / "long.wav", long_clip)),
                                  SAMPLE_RATE, SAMPLE_RATE)
    np.testing.assert_array_equal(cropped, full)
    # A truncated file that ends in half a sample keeps its whole samples.
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes((tmp_path / "short.wav").read_bytes()[:-1])
    np.testing.assert_array_equal(audio_io.read_wav(str(truncated), SAMPLE_RATE, 16)[:16],
                                  full[:16])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread imports aifc, audioop, sunau
def test_unreadable_files_are_reported_and_skipped(tmp_path, capsys):
    data = make_speech_commands(tmp_path / "d", ["yes", "no"], ["cat"], background=False)
    empty = write_wav(data / "yes" / "aaaaaaaa_nohash_0.wav", np.zeros(0))
    garbage = data / "no" / "bbbbbbbb_nohash_0.wav"
    garbage.write_bytes(b"this is not audio\n" * 50)
    stereo = data / "yes" / "cccccccc_nohash_0.wav"
    soundfile.write(stereo, np.stack([SINE, SINE], axis=1)[::2], 8000, subtype="PCM_24")
    for bad in (empty, garbage):
        with pytest.raises(ValueError, match=str(bad)):
            audio_io.read_wav(str(bad), SAMPLE_RATE, SAMPLE_RATE)
    audio = processor(data, wanted_words=["yes", "no"], validation_percentage=0,
                      testing_percentage=0)
    err = capsys.readouterr().err
    assert str(empty) in err and str(garbage) in err
    paths = {path for path, _ in audio.data_index["training"]}
    assert str(empty) not in paths and str(garbage) not in paths and str(stereo) in paths
    assert len(audio.rows["training"]) == len(audio.data_index["training"])
    assert len(audio.audio["training"]) == len({p for p in paths if p} | set(audio.unknown_pool)) + 1
    assert audio.fingerprints("training")[0].shape[0] == audio.set_size("training")


def test_data_dir_without_audio(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no audio")
    with pytest.raises(UsageError, match="no audio files in word folders .* found: notes"):
        processor(tmp_path)
    with pytest.raises(UsageError, match="absent is not a folder"):
        processor(tmp_path / "absent")


def test_wanted_word_without_folder(data_dir):
    with pytest.raises(UsageError) as error:
        processor(data_dir, wanted_words=["yes", "maybe"])
    message = str(error.value)
    assert "maybe" in message and "cat, dog, no, up, yes" in message


# ---------------------------------------------------------------- download

def test_download_unreachable_url(tmp_path):
    with pytest.raises(UsageError, match="--data_url ''"):
        download.maybe_download_and_extract_dataset("http://127.0.0.1:9/x.tar.gz",
                                                      str(tmp_path / "data"))


def test_download_and_extract_once(tmp_path):
    source = make_speech_commands(tmp_path / "src", ["yes"], [], speakers=["0a0a0a0a"],
                                  clips_per_speaker=1, background=False)
    archive = tmp_path / "speech.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "yes", arcname="yes")
    url = "file://" + urllib.parse.quote(str(archive))
    data = tmp_path / "data"
    download.maybe_download_and_extract_dataset(url, str(data))
    extracted = data / "yes" / "0a0a0a0a_nohash_0.wav"
    assert extracted.read_bytes() == (source / "yes" / "0a0a0a0a_nohash_0.wav").read_bytes()
    extracted.unlink()
    download.maybe_download_and_extract_dataset(url, str(data))
    assert not extracted.exists()  # the second call neither downloads nor extracts


def test_empty_data_url_does_nothing(tmp_path):
    download.maybe_download_and_extract_dataset("", str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()
    assert os.listdir(tmp_path) == []
