"""Malformed audio never ends a run: every reader either decodes a damaged file or
raises ValueError("<path>: <one-line reason>"), and a data set skips it with a warning.

A seeded fuzz of WAV, FLAC and Ogg Opus files with a few header bytes changed
(some also truncated), plus the damaged headers that used to escape as other
exceptions (wave's bare RuntimeError) or to allocate gigabytes.
"""
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile

from kws.data import audio_io

from conftest import SAMPLE_RATE, make_speech_commands, processor

MUTANTS_PER_FORMAT = 150
FORMATS = (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "OPUS"))
CLIP = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)).astype(np.float32)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread imports aifc


def write_clip(path, fmt: str, subtype: str) -> bytes:
    if subtype not in soundfile.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    soundfile.write(str(path), CLIP, SAMPLE_RATE, format=fmt, subtype=subtype)
    return path.read_bytes()


def mutants(data: bytes, count: int, rng: np.random.Generator):
    """count copies of data with 1-6 of its first 64 bytes changed, a third also truncated."""
    for _ in range(count):
        mutant = bytearray(data)
        for _ in range(rng.integers(1, 7)):
            position = rng.integers(0, 64)
            mutant[position] = (mutant[position] + rng.integers(1, 256)) % 256  # always a change
        if rng.random() < 1 / 3:
            mutant = mutant[:rng.integers(0, len(mutant))]
        yield bytes(mutant)


def check_one_line_error(error: ValueError, path) -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and len(message) > len(f"{path}: "), message
    assert "\n" not in message and "\r" not in message, message


@pytest.fixture(scope="module")
def mutant_files(tmp_path_factory):
    """MUTANTS_PER_FORMAT damaged copies of a valid WAV, FLAC and Ogg Opus file (seeded)."""
    root = tmp_path_factory.mktemp("mutants")
    rng = np.random.default_rng(20240517)
    paths = []
    for extension, fmt, subtype in FORMATS:
        data = write_clip(root / f"valid.{extension}", fmt, subtype)
        for i, mutant in enumerate(mutants(data, MUTANTS_PER_FORMAT, rng)):
            path = root / f"mutant_{i:03d}.{extension}"
            path.write_bytes(mutant)
            paths.append(str(path))
    return root, paths


def test_valid_originals_read(mutant_files):
    root, _ = mutant_files
    for extension, _, _ in FORMATS:
        clip = audio_io.read_wav(str(root / f"valid.{extension}"), SAMPLE_RATE, SAMPLE_RATE)
        assert clip.dtype == np.int16 and clip.shape == (SAMPLE_RATE,)
        assert np.abs(clip[:len(CLIP)]).max() > 5000 and not clip[len(CLIP) + 400:].any()


def test_every_mutant_decodes_or_is_one_value_error(mutant_files):
    _, paths = mutant_files
    outcomes = {}
    for path in paths:
        try:
            clip = audio_io.read_wav(path, SAMPLE_RATE, SAMPLE_RATE)
        except ValueError as error:
            check_one_line_error(error, path)
            outcomes[path] = "error"
        else:
            assert clip.dtype == np.int16 and clip.shape == (SAMPLE_RATE,), path
            outcomes[path] = "read"
    # The fuzz reaches both outcomes (else it tests nothing), for WAV at least.
    wav = [outcomes[path] for path in paths if path.endswith(".wav")]
    assert "read" in wav and "error" in wav


def test_load_clips_over_all_mutants_never_raises(mutant_files):
    _, paths = mutant_files
    clips, kept, errors = audio_io.load_clips(paths, SAMPLE_RATE, SAMPLE_RATE)
    assert clips.dtype == np.int16 and clips.shape == (len(kept), SAMPLE_RATE)
    assert len(kept) + len(errors) == len(paths)
    unreadable = [path for i, path in enumerate(paths) if i not in set(kept)]
    for path, line in zip(unreadable, errors):
        assert isinstance(line, str)
        check_one_line_error(ValueError(line), path)


def wav_bytes(tmp_path) -> bytes:
    return write_clip(tmp_path / "valid.wav", "WAV", "PCM_16")


def test_chunk_that_makes_wave_raise_runtime_error(tmp_path):
    """An unknown chunk longer than the RIFF chunk: wave's Chunk.seek raises a bare RuntimeError."""
    data = bytearray(wav_bytes(tmp_path))
    assert data[36:40] == b"data"
    data[36:44] = b"junk" + struct.pack("<I", 0x10000000)
    path = tmp_path / "junk.wav"
    path.write_bytes(bytes(data))
    import wave
    with pytest.raises(RuntimeError):
        wave.open(str(path)).close()
    for read in (lambda: audio_io.read_wav(str(path), SAMPLE_RATE, SAMPLE_RATE),
                 lambda: audio_io.read_audio(str(path), SAMPLE_RATE)):
        with pytest.raises(ValueError) as error:
            read()
        check_one_line_error(error.value, path)
    _, kept, errors = audio_io.load_clips([str(path)], SAMPLE_RATE, SAMPLE_RATE)
    assert kept == [] and len(errors) == 1 and errors[0].startswith(f"{path}: ")


def read_with_peak(path):
    """read_wav's result (or ValueError) and the peak Python/numpy memory it allocated."""
    tracemalloc.start()
    try:
        try:
            result = audio_io.read_wav(str(path), SAMPLE_RATE, SAMPLE_RATE)
        except ValueError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_absurd_lengths_and_rates_allocate_no_gigabytes(tmp_path):
    limit = 64 << 20
    # A WAV whose RIFF and data chunks claim 4 GiB: the fast path reads what is there.
    data = bytearray(wav_bytes(tmp_path))
    data[4:8] = struct.pack("<I", 0xFFFFFFF8)
    data[40:44] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "long.wav").write_bytes(bytes(data))
    clip, peak = read_with_peak(tmp_path / "long.wav")
    assert isinstance(clip, np.ndarray) and np.abs(clip[:len(CLIP)]).max() > 5000
    assert peak < limit
    # A FLAC stream that claims 2**36 - 1 samples: decoded in blocks, never allocated at once.
    data = bytearray(write_clip(tmp_path / "valid.flac", "FLAC", "PCM_16"))
    assert data[:4] == b"fLaC"
    data[21] |= 0x0F
    data[22:26] = b"\xff\xff\xff\xff"
    (tmp_path / "long.flac").write_bytes(bytes(data))
    assert soundfile.info(str(tmp_path / "long.flac")).frames == 2**36 - 1
    result, peak = read_with_peak(tmp_path / "long.flac")
    assert peak < limit
    if isinstance(result, ValueError):
        check_one_line_error(result, tmp_path / "long.flac")
    # A WAV at 1 Hz would resample to 16000 times its length: refused.
    data = bytearray(wav_bytes(tmp_path))
    data[24:28] = struct.pack("<I", 1)
    (tmp_path / "slow.wav").write_bytes(bytes(data))
    result, peak = read_with_peak(tmp_path / "slow.wav")
    assert isinstance(result, ValueError) and "sample rate" in str(result) and peak < limit
    check_one_line_error(result, tmp_path / "slow.wav")


def test_missing_file_and_folder_are_one_line_errors(tmp_path):
    for path in (tmp_path / "absent.wav", tmp_path):
        with pytest.raises(ValueError) as error:
            audio_io.read_wav(str(path), SAMPLE_RATE, SAMPLE_RATE)
        check_one_line_error(error.value, path)


def test_data_set_skips_corrupted_files_and_warns(tmp_path, capsys):
    data = make_speech_commands(tmp_path / "d", ["yes", "no"], ["cat"])
    junk = bytearray(wav_bytes(tmp_path))
    junk[36:44] = b"junk" + struct.pack("<I", 0x10000000)  # wave raises RuntimeError
    corrupted = [data / "yes" / "aaaaaaaa_nohash_0.wav", data / "no" / "bbbbbbbb_nohash_0.wav",
                 data / "_background_noise_" / "broken.wav"]
    corrupted[0].write_bytes(bytes(junk))
    corrupted[1].write_bytes(bytes(junk[:30]))  # truncated inside the fmt chunk
    corrupted[2].write_bytes(bytes(junk))
    audio = processor(data, wanted_words=["yes", "no"], validation_percentage=0,
                      testing_percentage=0)
    err = capsys.readouterr().err
    for path in corrupted:
        lines = [line for line in err.splitlines() if str(path) in line]
        assert len(lines) == 1 and lines[0].startswith(f"warning: skipped {path}: "), err
    paths = {path for path, _ in audio.data_index["training"]}
    assert not paths & {str(path) for path in corrupted}
    intact = {str(path) for word in ("yes", "no") for path in (data / word).iterdir()} - {
        str(path) for path in corrupted}
    assert intact and intact <= paths
    assert len(audio.background_data) == 2  # white_noise.wav and hum.wav, not broken.wav
    assert audio.fingerprints("training")[0].shape[0] == audio.set_size("training")
