"""Tests of kws/data/spectral_mix.py: batches mixed in the spectrum equal the same mix made as audio."""

import numpy as np
import pytest

from kws import features
from kws.cli import UsageError
from kws.data import augmentation, spectral_mix

from conftest import processor


def audio_mix(clips, noises, draws, hop, frames_only_settings):
    """The audio that the draws describe: each clip shifted by whole hops, scaled, plus its noise."""
    samples = clips.shape[1]
    out = np.zeros(clips.shape, np.float64)
    for i, clip in enumerate(clips.astype(np.float64) / features.PCM_SCALE):
        offset = int(draws.shifts[i]) * hop
        shifted = np.zeros(samples)
        if offset >= 0:
            shifted[offset:] = clip[:samples - offset]
        else:
            shifted[:samples + offset] = clip[-offset:]
        out[i] = shifted * draws.gains[i]
        if draws.volumes[i] > 0:
            noise = np.resize(noises[draws.noise_choice[i]], max(len(noises[draws.noise_choice[i]]), samples))
            start = int(draws.noise_starts[i]) * hop
            out[i] += draws.volumes[i] * noise[start:start + samples]
    return out


@pytest.mark.parametrize("preprocess, window, stride, bins", [("mfcc", 40, 20, 10), ("mfcc", 30, 10, 40),
                                                              ("log_mel", 30, 10, 40)])
def test_spectral_batches_equal_the_audio_mix(data_dir, preprocess, window, stride, bins):
    settings = features.prepare_model_settings(16000, 1000, window, stride, bins, preprocess)
    audio = processor(data_dir, model_settings=settings, silence_percentage=20)
    clips = audio.audio["training"][:12]
    noises = audio.background.noises
    hop = settings.window_stride_samples
    mixer = spectral_mix.SpectralMixer(clips, noises, settings, 1600, features.spectrum_bins(settings))
    draw_settings = spectral_mix.DrawSettings(mixer.shift_hops, 3.0, len(noises), 0.8, 0.1)
    silence = np.zeros(len(clips), bool)
    silence[-1] = True
    draws = spectral_mix.draw(draw_settings, mixer, silence, np.random.default_rng(3))
    assert np.abs(draws.shifts).max() <= 1600 // hop and (draws.volumes > 0).any() and draws.volumes[-1] > 0
    mixed = spectral_mix.fingerprints(mixer.magnitude(np.arange(len(clips)), draws), settings)
    expected = features.Fingerprinter(settings)(audio_mix(clips, noises, draws, hop, settings))
    # bfloat16 spectra: within 0.01 where the features span about 30 (log-mel) to 250 (MFCC);
    # a shift one hop off is 25 to 240 away
    np.testing.assert_allclose(mixed, expected, atol=0.02, rtol=0)


def test_spectral_training_dataset_is_used_by_default_and_is_a_function_of_seed_and_step(data_dir, capsys):
    audio = processor(data_dir)
    first = [x.numpy() for x, _ in audio.training_dataset(8, start_step=5).take(2)]
    assert "mixed in the spectrum" in capsys.readouterr().out
    again = processor(data_dir)
    resumed = [x.numpy() for x, _ in again.training_dataset(8, start_step=6).take(1)]
    np.testing.assert_array_equal(first[1], resumed[0])
    assert first[0].shape == (8, audio.model_settings.fingerprint_size)


def test_audio_only_augmentations_fall_back_to_audio_or_refuse(data_dir, capsys):
    resampled = processor(data_dir, augmentation=augmentation.Augmentation(resample=0.1))
    assert resampled.spectral_mixer() is None
    assert "--resample" in capsys.readouterr().out
    forced = processor(data_dir, augmentation=augmentation.Augmentation(
        resample=0.1, augmentation_domain="spectrum"))
    with pytest.raises(UsageError, match="--augmentation_domain spectrum: --resample"):
        forced.spectral_mixer()
    assert processor(data_dir, augmentation=augmentation.Augmentation(
        augmentation_domain="audio")).spectral_mixer() is None


def test_auto_falls_back_when_the_spectra_would_not_fit(monkeypatch):
    assert spectral_mix.why_not("auto", [], 10 * 2**30, 16 * 2**30) is not None
    assert spectral_mix.why_not("spectrum", [], 10 * 2**30, 16 * 2**30) is None
    assert spectral_mix.why_not("auto", [], 1 * 2**30, 16 * 2**30) is None


def test_masks_apply_to_spectral_batches(data_dir):
    masked = processor(data_dir, augmentation=augmentation.Augmentation(time_masks=2, time_mask_max=5))
    x, _ = next(iter(masked.training_dataset(8)))
    frames = masked.model_settings.spectrogram_length
    rows = x.numpy().reshape(8, frames, -1)
    assert (np.all(rows == 0, axis=2)).any()


def test_bfloat16_bits_round_to_nearest_and_widen_back():
    values = np.array([0.0, -0.0, 1.0, -3.5, 1e-30, 3e38, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20],
                      np.float32)
    widened = np.empty_like(values)
    spectral_mix.widen_bfloat16(spectral_mix.bfloat16_bits(values), widened)
    # 7 mantissa bits: ties go to the even one (1 + 2**-8 -> 1, 1 + 3 * 2**-8 -> 1 + 2**-6), above a tie up
    np.testing.assert_array_equal(widened[[0, 2, 3, 6, 7, 8]], [0.0, 1.0, -3.5, 1.0, 1 + 2**-6, 1 + 2**-7])
    assert np.signbit(widened[1])
    np.testing.assert_allclose(widened, values, rtol=2**-8, atol=0)
