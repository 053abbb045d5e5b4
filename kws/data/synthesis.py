"""Synthesis of a keyword data set in the Speech Commands layout, offline.

Owns what synthesize_dataset.py does: the speaker pool and the plan of clips
(who says each clip, its file name and seed), fitting speech into 1 s 16 kHz
clips at a random offset and level, the shards synthesized in fresh processes
(so that the espeak-ng output does not depend on the number of processes),
the background noise (generated or copied), the checks of the inputs, and the
summary of a run. The speech engines are in synthesis_engines.
"""
import concurrent.futures
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

from kws import cli
from kws.data.synthesis_engines import EspeakEngine, MixedEngine, PiperSpeaker, Speaker, make_engine

SPEECH_COMMANDS_WORDS = (
    "yes,no,up,down,left,right,on,off,stop,go,backward,bed,bird,cat,dog,eight,"
    "five,follow,forward,four,happy,house,learn,marvin,nine,one,seven,sheila,"
    "six,three,tree,two,visual,wow,zero").split(",")
BACKGROUND_NOISE_DIR_NAME = "_background_noise_"

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
SHARD_CLIPS = 100  # clips of one word synthesized in order by one fresh process
TRIM_DB = 40  # speech ends where the signal falls this far below its peak
LEVEL_DBFS = (-30.0, -1.0)  # peak level of a clip
SPEED_UP_MARGIN = 1.1  # extra speed when a word has to be said faster to fit

NOISE_SECONDS = 60
NOISE_RMS = 0.003  # like white_noise.wav and pink_noise.wav of Speech Commands


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
