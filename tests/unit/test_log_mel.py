"""Log-mel features (--preprocess log_mel): the flags, the filterbank, the numpy Fingerprinter
equal to the TensorFlow graph, features_from_magnitude, and raw-audio models computing them."""
import numpy as np
import pytest

from kws import cli, features, graph_features, tf_env
from kws.cli import UsageError
from kws.export import quantization, raw_audio
from kws.models import registry
from kws.runtime.tflite_model import TFLiteModel

from conftest import SAMPLE_RATE

tf = tf_env.import_tensorflow()

BC_RESNET = features.prepare_model_settings(SAMPLE_RATE, 1000, 30, 10, 40, features.LOG_MEL)
FLOAT32 = quantization.MODES[(quantization.NO_QUANTIZATION, "float32")]


def clips(count: int = 5) -> np.ndarray:
    """int16 clips: digital silence, noise, tone bursts, a half-silent clip."""
    rng = np.random.default_rng(3)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    burst = np.exp(-((t - 0.4) / 0.1) ** 2) * (np.sin(2 * np.pi * 330 * t) +
                                               0.3 * np.sin(2 * np.pi * 5200 * t))
    audio = [np.zeros(SAMPLE_RATE), rng.normal(0, 0.1, SAMPLE_RATE), 0.5 * burst,
             np.where(t < 0.5, 0, rng.normal(0, 0.05, SAMPLE_RATE)),
             rng.uniform(-1, 1, SAMPLE_RATE)]
    return np.round(np.stack(audio[:count]) * 32767).astype(np.int16)


def parse(argv):
    parser = cli.make_parser("test")
    features.add_feature_flags(parser)
    return features.settings_from_flags(parser.parse_args(argv))


def test_flags_default_to_the_mfcc_of_existing_models():
    assert parse([]) == features.ModelSettings(SAMPLE_RATE, 1000, 30.0, 10.0, 40)
    assert parse([]).preprocess == features.MFCC
    assert parse(["--dct_coefficient_count", "10"]) == parse(["--feature_bin_count", "10"])
    assert parse(["--preprocess", "log_mel", "--feature_bin_count", "40"]) == BC_RESNET


def test_an_unknown_preprocess_is_one_line():
    with pytest.raises(UsageError, match="^--preprocess average: expected one of mfcc, log_mel$"):
        features.prepare_model_settings(SAMPLE_RATE, 1000, 30, 10, 40, "average")


def test_log_mel_filterbank_is_the_ops_construction_up_to_8_khz():
    mfcc = features.prepare_model_settings(SAMPLE_RATE, 1000, 30, 10, 13)
    assert np.array_equal(features.mel_weight_matrix(mfcc),
                          features.mel_weight_matrix(mfcc, 40, 4000.0))
    assert features.spectrum_bins(mfcc) == 128  # below 4 kHz (bin 128), at 31.25 Hz per bin
    mel, dct = features.feature_matrices(BC_RESNET)
    assert dct is None and mel.shape[1] == 40
    assert np.array_equal(mel, features.mel_weight_matrix(BC_RESNET, 40, 8000.0)[:len(mel)])
    assert features.spectrum_bins(BC_RESNET) == len(mel) == 257  # the spectrum, up to 8 kHz
    assert np.all(mel.max(axis=0) > 0.3)  # every band reads some bin
    inside = mel[mel[:, 0].argmax() + 1:mel[:, -1].argmax()]  # between the first and last peaks
    np.testing.assert_allclose(inside.sum(axis=1), 1.0, atol=1e-12)  # triangles overlap in pairs
    narrow = features.prepare_model_settings(8000, 1000, 30, 10, 20, features.LOG_MEL)
    assert features.spectrum_bins(narrow) <= narrow.fft_length // 2 + 1  # Nyquist at 4 kHz


@pytest.mark.parametrize("window_size_ms, window_stride_ms, bands",
                         [(30, 10, 40), (40, 20, 10), (25, 10, 80)])
def test_numpy_log_mel_equals_the_graph(window_size_ms, window_stride_ms, bands):
    settings = features.prepare_model_settings(SAMPLE_RATE, 1000, window_size_ms,
                                               window_stride_ms, bands, features.LOG_MEL)
    audio = clips()
    numpy_features = features.Fingerprinter(settings)(audio, batch_size=2)
    graph = graph_features.graph_fingerprints(tf.constant(audio / 32768.0, tf.float32), settings).numpy()
    assert numpy_features.shape == graph.shape == (len(audio), settings.fingerprint_size)
    assert numpy_features[0].max() == np.float32(np.log(1e-12))  # silence: the floor
    # float32's FFT rounds relative to a frame's energy: the mel energies agree to 2e-6 of the
    # frame's strongest band, and their logs to 1e-5 within 20 dB of it.
    energies = [np.exp(values.astype(np.float64)).reshape(len(audio), -1, bands)
                for values in (numpy_features, graph)]
    peak = energies[0].max(axis=2, keepdims=True)
    assert np.all(np.abs(energies[0] - energies[1]) <= 2e-6 * peak)
    strong = (energies[0] >= 0.01 * peak).reshape(len(audio), -1)
    assert np.abs(numpy_features - graph)[strong].max() <= 1e-5
    mfcc = features.prepare_model_settings(SAMPLE_RATE, 1000, window_size_ms,
                                           window_stride_ms, min(bands, 40))
    assert not np.allclose(features.Fingerprinter(mfcc)(audio)[1].reshape(-1, min(bands, 40)),
                           numpy_features[1].reshape(-1, bands)[:, :40])


def magnitude_frames(audio: np.ndarray, settings: features.ModelSettings) -> np.ndarray:
    """The magnitude spectra [clips, frames, spectrum_bins] of int16 clips, in float64."""
    size, stride = settings.window_size_samples, settings.window_stride_samples
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)
    frames = np.lib.stride_tricks.sliding_window_view(audio / 32768.0, size, axis=1)[:, ::stride]
    spectrum = np.fft.rfft(frames * window, settings.fft_length)
    return np.abs(spectrum)[..., :features.spectrum_bins(settings)]


@pytest.mark.parametrize("preprocess, count", [(features.MFCC, 10), (features.LOG_MEL, 40)])
def test_features_from_magnitude_are_the_fingerprints(preprocess, count):
    settings = features.prepare_model_settings(SAMPLE_RATE, 1000, 30, 10, count, preprocess)
    audio = clips()
    expected = features.Fingerprinter(settings)(audio).reshape(len(audio), -1, count)
    magnitude = magnitude_frames(audio, settings)
    exact = features.features_from_magnitude(magnitude, settings)
    assert exact.dtype == np.float64 and exact.shape == expected.shape
    scale = np.abs(expected).max()
    assert np.abs(exact - expected).max() <= 1e-6 * scale
    single = features.features_from_magnitude(magnitude.astype(np.float32), settings)
    assert single.dtype == np.float32
    assert np.abs(single - expected).max() <= 1e-4 * scale
    with pytest.raises(ValueError, match="expected .* spectrum bins"):
        features.features_from_magnitude(magnitude[..., 1:], settings)


def test_the_mfcc_op_reference_refuses_log_mel_in_one_line():
    with pytest.raises(UsageError, match="^--preprocess log_mel: TensorFlow has no op for it"):
        graph_features.reference_fingerprint(np.zeros(SAMPLE_RATE, np.float32), BC_RESNET)


def test_a_raw_audio_model_computes_log_mel():
    """convert.py --include_features: the front end inside the .tflite is the log-mel one."""
    settings = features.prepare_model_settings(SAMPLE_RATE, 1000, 40, 20, 16, features.LOG_MEL)
    tf.keras.utils.set_random_seed(0)
    model = registry.create_model(settings, "dnn", [8], label_count=4)
    content, _ = raw_audio.convert_raw_audio(model, settings, FLOAT32, "int16", None, 0)
    audio = clips()
    expected = model(features.Fingerprinter(settings)(audio), training=False).numpy()
    raw = TFLiteModel(content=content)
    raw.check_settings(settings)
    assert raw.takes_audio
    assert np.abs(raw.predict(audio) - expected).max() <= 1e-4
