"""Shared test fixtures: a tiny generated Speech Commands folder, and ../shared."""
import hashlib
import importlib
import importlib.util
import re
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kws import tf_env  # noqa: E402

tf_env.configure()  # tf-keras selected before any test imports TensorFlow

SHARED = ROOT.parent / "shared"


def load_script(name: str):
    """A root script as a module. test.py is loaded as `test_py`: `import test` gives the
    standard library's package of that name, whichever comes first on sys.path."""
    if name != "test":
        return importlib.import_module(name)
    if "test_py" not in sys.modules:
        spec = importlib.util.spec_from_file_location("test_py", ROOT / "test.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_py"] = module
        spec.loader.exec_module(module)
    return sys.modules["test_py"]
SAMPLE_RATE = 16000


def google_which_set(filename: str, validation_percentage: float = 10,
                     testing_percentage: float = 10) -> str:
    """The split rule of tensorflow/examples/speech_commands/input_data.py, written out."""
    max_num_wavs_per_class = 2**27 - 1
    hash_name = re.sub(r"_nohash_.*$", "", Path(filename).name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = ((int(hash_name_hashed, 16) % (max_num_wavs_per_class + 1)) *
                       (100.0 / max_num_wavs_per_class))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def write_wav(path, audio, sample_rate: int = SAMPLE_RATE) -> Path:
    """Writes int16 mono audio as a 16-bit PCM WAV (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return path


def fake_speakers(per_partition=(8, 2, 2)):
    """Hex speaker ids: per_partition = how many land in training, validation, testing (10/10)."""
    wanted = dict(zip(("training", "validation", "testing"), per_partition))
    speakers, i = [], 0
    while any(wanted.values()):
        name = hashlib.sha1(f"speaker{i}".encode()).hexdigest()[:8]
        partition = google_which_set(name + "_nohash_0.wav")
        if wanted[partition]:
            wanted[partition] -= 1
            speakers.append(name)
        i += 1
    return speakers


def make_speech_commands(root, words=("yes", "no", "up"), unknown_words=("cat", "dog"),
                         speakers=None, clips_per_speaker=2, background=True,
                         samples=SAMPLE_RATE) -> Path:
    """A tiny Speech Commands layout: <root>/<word>/<speaker>_nohash_<n>.wav (+ noise).

    Each clip is a word-specific tone burst plus a little noise, deterministic.
    """
    root = Path(root)
    speakers = fake_speakers() if speakers is None else speakers
    t = np.arange(samples) / SAMPLE_RATE
    for w, word in enumerate(list(words) + list(unknown_words)):
        for speaker in speakers:
            for n in range(clips_per_speaker):
                name = f"{speaker}_nohash_{n}.wav"
                rng = np.random.default_rng(int(hashlib.sha1(f"{word}/{name}".encode()).hexdigest()[:8], 16))
                envelope = np.exp(-((t - 0.5) / 0.15) ** 2)
                audio = 0.3 * envelope * np.sin(2 * np.pi * (300 + 150 * w + 20 * n) * t)
                audio += rng.normal(0, 0.01, samples)
                write_wav(root / word / name, np.round(audio * 32767))
    if background:
        rng = np.random.default_rng(7)
        noise_t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
        write_wav(root / "_background_noise_" / "white_noise.wav",
                  np.round(rng.uniform(-0.5, 0.5, noise_t.size) * 32767))
        write_wav(root / "_background_noise_" / "hum.wav",
                  np.round(0.4 * np.sin(2 * np.pi * 50 * noise_t) * 32767))
    return root


WANTED = ["yes", "no", "up"]
UNKNOWN = ["cat", "dog"]


def ds_cnn_settings():
    """DS-CNN fingerprint settings: 40 ms windows every 20 ms, 10 coefficients."""
    from kws.features import prepare_model_settings
    return prepare_model_settings(SAMPLE_RATE, 1000, 40, 20, 10)


def processor(data_dir, **kwargs):
    """An AudioProcessor over data_dir for WANTED with DS-CNN features; kwargs override."""
    from kws.data import dataset, speech_commands
    settings = kwargs.pop("model_settings", ds_cnn_settings())
    return speech_commands.AudioProcessor(dataset.DataSettings(
        str(data_dir), tuple(kwargs.pop("wanted_words", WANTED)), **kwargs), settings)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Shared read-only data dir (with background noise) for the index/augmentation tests."""
    return make_speech_commands(tmp_path_factory.mktemp("data") / "speech", WANTED, UNKNOWN)


@pytest.fixture
def speech_commands_dir(tmp_path) -> Path:
    """A generated data dir: wanted yes/no/up, unknown cat/dog, 12 speakers x 2 clips, noise."""
    return make_speech_commands(tmp_path / "speech_commands")


@pytest.fixture
def shared_dir() -> Path:
    """../shared (real clips); the test is skipped where it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"real data not available: {SHARED / 'data'} is absent")
    return SHARED


# A tiny --model_size_info for every registered architecture, for 1 s clips
# fingerprinted with 40 ms windows every 20 ms (49 frames) and 10 coefficients.
TINY_SIZE_INFO = {
    "single_fc": [],
    "dnn": [8, 6],
    "cnn": [4, 10, 4, 1, 1, 5, 10, 4, 2, 1, 6, 7],
    "ds_cnn": [2, 8, 10, 4, 2, 2, 8, 3, 3, 1, 1],
    "basic_lstm": [5],
    "lstm": [3, 5],
    "gru": [2, 4],
    "crnn": [4, 10, 4, 2, 2, 2, 5, 6],
    "svdf": [3, 3, 4, 8, 6],
    "svdf_resnet": [1, 1, 1, 3, 4, 3, 4, 3, 8, 2, 2, 1, 8],
    "tc_resnet": [3, 4, 8],
    "mobilenet": [4, 3, 2, 3, 2, 8],
    "mobilenet_v2": [4, 3, 2, 3, 1, 4, 150],
    "inception": [4, 5, 2, 2, 4, 3, 1],
    "inception_resnet": [4, 5, 2, 50, 2, 2, 4, 3, 1],
    "xception": [1, 1, 1, 5, 4, 3, 4, 3, 6, 3, 8, 2, 2, 1, 1, 8],
    "bc_resnet": [2],  # with 40 log-mel bands: tiny_feature_flags
}
TINY_FEATURE_FLAGS = ["--dct_coefficient_count", "10", "--window_size_ms", "40",
                      "--window_stride_ms", "20"]
# bc_resnet halves the frequency axis three times into 5 sub-bands: 40 log-mel bands.
TINY_LOG_MEL_FLAGS = ["--preprocess", "log_mel", "--dct_coefficient_count", "40",
                      "--window_size_ms", "40", "--window_stride_ms", "20"]


def tiny_feature_flags(architecture: str) -> list:
    """The fingerprint flags of an architecture's tiny model (TINY_SIZE_INFO)."""
    return TINY_LOG_MEL_FLAGS if architecture == "bc_resnet" else TINY_FEATURE_FLAGS


def tiny_settings(architecture: str, clip_duration_ms: int = 1000):
    """The features.ModelSettings of tiny_feature_flags(architecture)."""
    from kws.features import prepare_model_settings
    if architecture == "bc_resnet":
        return prepare_model_settings(SAMPLE_RATE, clip_duration_ms, 40, 20, 40, "log_mel")
    return prepare_model_settings(SAMPLE_RATE, clip_duration_ms, 40, 20, 10)


def mfcc_like_fingerprints(count: int, settings=None, seed: int = 0) -> np.ndarray:
    """float32 [count, fingerprint_size] MFCC-like fingerprints: a large first coefficient,
    small others; settings default to tiny_settings of the MFCC architectures."""
    settings = settings or tiny_settings("dnn")
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 3, (count, settings.spectrogram_length, settings.dct_coefficient_count))
    values[:, :, 0] = rng.normal(-20, 15, (count, settings.spectrogram_length))
    return values.reshape(count, -1).astype(np.float32)
