"""Tests of the augmentations and data-source flags added to input_data.py:
--resample, --background_snr_db, --reverb_probability, --gain_db, --eq_db, SpecAugment
masks, --extra_unknown_dirs and --validation_dir."""
import numpy as np
import pytest

from kws import cli, features, graph_features, tf_env, vocabulary
from kws.data import augmentation, data_split, speech_commands

from conftest import SAMPLE_RATE, ds_cnn_settings, fake_speakers, make_speech_commands, processor

DS_CNN = ds_cnn_settings()
FULL = augmentation.Augmentation(resample=0.15, background_snr_db=(0.0, 20.0), reverb_probability=0.5,
                               gain_db=6, eq_db=10, time_masks=2, time_mask_max=5, frequency_masks=1,
                               frequency_mask_max=2)


def tone(frequency=440.0, at=0.5, width=0.1):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    return (0.5 * np.exp(-((t - at) / width) ** 2) * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(clip):
    spectrum = np.abs(np.fft.rfft(clip))
    return np.argmax(spectrum) * SAMPLE_RATE / len(clip)


# ---------------------------------------------------------------- building blocks

def test_resample_changes_pitch_and_duration_about_the_centre():
    clip = tone(500.0)
    out = augmentation.resample_clips(np.stack([clip, clip, clip]), np.array([1.0, 1.2, 0.8]))
    np.testing.assert_allclose(out[0], clip, atol=1e-6)
    assert dominant_frequency(out[1]) == pytest.approx(600.0, abs=3)
    assert dominant_frequency(out[2]) == pytest.approx(400.0, abs=3)
    # A burst at the centre stays there; faster speech is shorter.
    energy = np.square(out)
    centres = (energy * np.arange(SAMPLE_RATE)).sum(axis=1) / energy.sum(axis=1)
    np.testing.assert_allclose(centres, SAMPLE_RATE / 2, atol=20)
    assert np.count_nonzero(np.abs(out[1]) > 0.01) < np.count_nonzero(np.abs(out[2]) > 0.01)


def test_reverb_keeps_the_peak_and_adds_a_tail():
    rng = np.random.default_rng(0)
    responses = augmentation.room_impulse_responses(4, SAMPLE_RATE, rng)
    assert responses.shape == (4, int(augmentation.REVERB_IR_SECONDS * SAMPLE_RATE))
    assert np.all(responses[:, 0] == 1)
    size = augmentation.reverb_size(SAMPLE_RATE, SAMPLE_RATE)
    clicks = np.zeros((4, SAMPLE_RATE), dtype=np.float32)
    clicks[:, 4000] = 0.5
    out = augmentation.reverberate(clicks, np.fft.rfft(responses, size), size)
    np.testing.assert_allclose(np.abs(out).max(axis=1), 0.5, rtol=1e-4)
    assert np.all(np.abs(out[:, :3990]).max(axis=1) < 1e-4)  # causal
    assert np.all(np.abs(out[:, 4100:6000]).max(axis=1) > 1e-4)  # a tail


def test_equalizer_curves_are_smooth_bounded_and_flat_below_50_hz():
    size = 2 * SAMPLE_RATE
    gains_db = 20 * np.log10(augmentation.equalizer_gains(64, size, SAMPLE_RATE, 10.0,
                                                        np.random.default_rng(0)))
    assert gains_db.shape == (64, size // 2 + 1)
    assert np.abs(gains_db).max() <= 10.0 + 1e-4
    assert np.abs(gains_db).max(axis=1).max() > 8  # peaks spread over [0, 10] dB
    frequencies = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    low = gains_db[:, frequencies <= augmentation.EQ_LOW_HZ]
    np.testing.assert_allclose(low, low[:, :1].repeat(low.shape[1], axis=1), atol=1e-4)
    assert np.abs(np.diff(gains_db, axis=1)).max() < 0.5  # no steps between neighbouring bins


def test_filter_clips_applies_each_clip_its_gain():
    size = 2 * SAMPLE_RATE
    clips = np.stack([tone(500.0), tone(3000.0)])
    frequencies = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    boost_high = np.where(frequencies > 1000, 2.0, 1.0).astype(np.float32)
    out = augmentation.filter_clips(clips, np.stack([boost_high, boost_high]), size)
    np.testing.assert_allclose(out[0], clips[0], atol=1e-3)
    np.testing.assert_allclose(out[1], 2 * clips[1], atol=1e-3)


def test_active_power_ignores_the_silent_part():
    clip = np.zeros((1, SAMPLE_RATE), dtype=np.float32)
    clip[0, 8000:12000] = 0.1 * np.sign(np.sin(np.arange(4000)))
    assert augmentation.active_power(clip)[0] == pytest.approx(0.01, rel=0.05)


# ---------------------------------------------------------------- in the pipeline

def test_augmentation_off_is_the_previous_stream(data_dir):
    plain = processor(data_dir, seed=5)
    explicit = processor(data_dir, seed=5, augmentation=augmentation.Augmentation())
    for (a, la), (b, lb), _ in zip(plain.training_batches(16), explicit.training_batches(16), range(3)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_full_augmentation_is_deterministic_resumable_and_in_range(data_dir):
    audio = processor(data_dir, seed=5, augmentation=FULL)
    stream = audio.training_batches(16)
    batches = [next(stream) for _ in range(4)]
    for clip_batch, _ in batches:
        assert clip_batch.dtype == np.float32
        assert clip_batch.min() >= -1 and clip_batch.max() <= 1
    resumed = next(processor(data_dir, seed=5, augmentation=FULL).training_batches(16, start_step=3))
    np.testing.assert_array_equal(resumed[0], batches[3][0])
    plain = next(processor(data_dir, seed=5).training_batches(16))
    np.testing.assert_array_equal(plain[1], batches[0][1])  # same samples, other audio
    assert not np.array_equal(plain[0], batches[0][0])


@pytest.mark.parametrize("snr_db", [0.0, 20.0])
def test_background_at_snr(data_dir, snr_db):
    audio = processor(data_dir, time_shift_ms=0, background_frequency=1,
                      augmentation=augmentation.Augmentation(background_snr_db=(snr_db, snr_db)))
    clean = np.zeros((8, SAMPLE_RATE), dtype=np.float32)
    clean[:, 6000:10000] = 0.1 * np.sin(np.arange(4000) * 0.3)
    labels = np.full(8, 2)
    out = audio.augment(np.round(clean * 32768).astype(np.int16), labels, np.random.default_rng(1))
    noise = out - np.round(clean * 32768) / 32768
    measured = 10 * np.log10(augmentation.active_power(clean) / np.mean(np.square(noise), axis=1))
    np.testing.assert_allclose(measured, snr_db, atol=0.1)


def test_gain_scales_speech(data_dir):
    audio = processor(data_dir, time_shift_ms=0, background_frequency=0,
                      augmentation=augmentation.Augmentation(gain_db=6))
    clips = np.full((200, SAMPLE_RATE), 1000, dtype=np.int16)
    out = audio.augment(clips, np.full(200, 2), np.random.default_rng(0))
    gains_db = 20 * np.log10(out[:, 0] / (1000 / 32768))
    assert gains_db.min() >= -6.001 and gains_db.max() <= 6.001
    assert gains_db.min() < -4 and gains_db.max() > 4
    assert np.all(out == out[:, :1])


def test_fingerprint_masks(data_dir):
    settings = augmentation.Augmentation(time_masks=2, time_mask_max=5, frequency_masks=1,
                                         frequency_mask_max=2)
    spec_augment = processor(data_dir, augmentation=settings).spec_augment
    masks = spec_augment.masks(64, step=7)
    assert masks.shape == (64, DS_CNN.spectrogram_length, DS_CNN.dct_coefficient_count)
    np.testing.assert_array_equal(masks, spec_augment.masks(64, step=7))
    assert not np.array_equal(masks, spec_augment.masks(64, step=8))
    masked_frames = np.all(masks == 0, axis=2).sum(axis=1)
    masked_coefficients = np.all(masks == 0, axis=1).sum(axis=1)
    assert masked_frames.max() <= 10 and masked_frames.max() > 0
    assert masked_coefficients.max() <= 2 and masked_coefficients.max() > 0


def test_training_dataset_applies_the_masks(data_dir):
    audio = processor(data_dir, seed=3,
                      augmentation=augmentation.Augmentation(time_masks=1, time_mask_max=10,
                                                             augmentation_domain="audio"))
    fingerprints, labels = next(audio.training_dataset(8, start_step=2).as_numpy_iterator())
    clips, expected_labels = next(audio.training_batches(8, start_step=2))
    np.testing.assert_array_equal(labels, expected_labels)
    tf = tf_env.import_tensorflow()
    expected = (graph_features.graph_fingerprints(tf.constant(clips), audio.model_settings).numpy()
                * audio.spec_augment.masks(8, 2).reshape(8, -1))
    np.testing.assert_allclose(fingerprints, expected, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- data sources

def test_extra_unknown_dirs_add_unknown_words_split_by_hash(data_dir, tmp_path):
    extra = make_speech_commands(tmp_path / "extra", ["yes"], ["bed", "happy"],
                                 speakers=fake_speakers((4, 2, 2)), background=False)
    audio = processor(data_dir, extra_unknown_dirs=[str(extra)], unknown_percentage=1000)
    paths = {partition: [path for path, _ in audio.data_index[partition]]
             for partition in speech_commands.PARTITIONS}
    for partition, partition_paths in paths.items():
        from_extra = [path for path in partition_paths if path.startswith(str(extra))]
        assert from_extra, partition
        assert all("/yes/" not in path for path in from_extra)  # keywords there are not unknown
        assert all(data_split.which_set(path, 10, 10) == partition for path in from_extra)
    with pytest.raises(cli.UsageError, match="not a folder"):
        processor(data_dir, extra_unknown_dirs=[str(tmp_path / "nothing")])


def test_validation_dir_replaces_the_validation_partition(data_dir, tmp_path):
    folder = make_speech_commands(tmp_path / "sample", ["yes", "no"], ["bird", "dog", "tree"],
                                  speakers=fake_speakers((3, 1, 0)), background=False)
    audio = processor(data_dir, validation_dir=str(folder), silence_percentage=50)
    fingerprints, labels = audio.fingerprints("validation")
    words = audio.words_list
    counts = {word: int(np.sum(labels == i)) for i, word in enumerate(words)}
    assert counts["yes"] == counts["no"] == 8 and counts["up"] == 0
    assert counts["_unknown_"] == 8  # 24 clips of other words, capped at half the 16 keywords
    assert counts["_silence_"] == 8  # noise at --silence_percentage of the keywords
    assert fingerprints.shape == (len(labels), DS_CNN.fingerprint_size)
    assert processor(data_dir).fingerprints("validation")[1].shape != labels.shape


def test_flags_build_the_augmentation(data_dir):
    parser = cli.make_parser("test")
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    augmentation.add_augmentation_flags(parser)
    args = parser.parse_args(["--data_url", "", "--data_dir", str(data_dir), "--wanted_words",
                              "yes,no,up", "--window_size_ms", "40", "--window_stride_ms", "20",
                              "--dct_coefficient_count", "10", "--resample", "0.1",
                              "--background_snr_db=-5,15", "--reverb_probability", "0.3",
                              "--gain_db", "3", "--eq_db", "12", "--time_masks", "2",
                              "--time_mask_max", "4"])
    audio = speech_commands.AudioProcessor.from_flags(args, features.settings_from_flags(args))
    assert audio.augmentation == augmentation.Augmentation(
        resample=0.1, background_snr_db=(-5.0, 15.0), reverb_probability=0.3, gain_db=3,
        eq_db=12, time_masks=2, time_mask_max=4)
    with pytest.raises(SystemExit):
        parser.parse_args(["--background_snr_db", "20,5"])
