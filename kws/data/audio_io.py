"""Audio files: reading any format as int16 mono clips, in parallel, with a decode cache.

16-bit mono PCM WAV at the wanted rate is read directly (one file after
another, the OS reading ahead); every other format and rate that soundfile or
audioread decode (as librosa.load would) is converted, in parallel. Malformed
files end as one ValueError line naming the file; sets of files skip them and
report them. Folders of compressed clips are decoded once and kept in a cache
(ClipCache).
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
DEFAULT_AUDIO_CACHE_DIR = os.path.join(tempfile.gettempdir(), "kws_audio_cache")
MIN_FILE_SAMPLE_RATE = 1000  # below this a header is garbage, and resampling would expand it 16x+


def read_wav(path: str, sample_rate: int, desired_samples: int) -> np.ndarray:
    """Reads an audio file as int16 mono at sample_rate, padded or cropped to desired_samples.

    16-bit mono PCM at the right rate is read directly; anything else (other
    rates, stereo, 8/24/32-bit, float, other formats soundfile or audioread
    read, as librosa.load would) is converted. Raises ValueError naming the
    file when it cannot be read or is empty.
    """
    return _fit(path, read_audio(path, sample_rate), desired_samples)


def _fit(path: str, audio: np.ndarray, desired_samples: int) -> np.ndarray:
    """audio padded or cropped to desired_samples; ValueError naming the file when it is empty."""
    if audio.size == 0:
        raise ValueError(f"{path}: no audio samples")
    if audio.size < desired_samples:
        audio = np.pad(audio, (0, desired_samples - audio.size))
    return audio[:desired_samples]


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """A whole audio file as int16 mono at sample_rate; ValueError naming the file if unreadable.

    Whatever a malformed file makes a decoder raise (wave's RuntimeError and
    struct.error, libsndfile errors, EOFError, MemoryError, ...) ends here as
    ValueError("<path>: <one-line reason>"), never as anything else.
    """
    try:
        audio = _read_pcm16(path, sample_rate)
        return _read_any(path, sample_rate) if audio is None else audio
    except Exception as error:  # noqa: BLE001  (the last guard: decoders raise anything on garbage)
        if isinstance(error, ValueError) and str(error).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: unreadable audio ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    """A decoder's exception as one line: libsndfile's message without the path it repeats,
    else the message, with the exception's type where the message alone says little."""
    text = getattr(error, "error_string", None)  # soundfile.LibsndfileError
    if not text and isinstance(error, OSError) and error.strerror:
        text = error.strerror  # without the file name it repeats
    if not text:
        text = str(error)
        if not isinstance(error, (OSError, ValueError)) or not text:
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return " ".join(text.split())


def _read_pcm16(path: str, sample_rate: int) -> Optional[np.ndarray]:
    """Fast path: 16-bit mono PCM WAV at sample_rate, else None.

    None also for a header the wave module cannot parse (it raises wave.Error,
    EOFError, RuntimeError, struct.error, ... on garbage): _read_any tries next.
    ValueError naming the file when it cannot be opened at all.
    """
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ValueError(f"{path}: {_one_line(error)}") from None
    with handle:
        try:
            with wave.open(handle, "rb") as wav:
                if (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) != (2, 1, sample_rate):
                    return None
                frames = wav.getnframes()
                if frames > 1 << 22:  # a header can claim 4 GiB: ask for no more than the file holds
                    frames = min(frames, os.fstat(handle.fileno()).st_size // 2)
                data = wav.readframes(frames)
        except Exception:  # noqa: BLE001  (a malformed header: the slow path decides)
            return None
    # A truncated file can end in half a sample: keep the whole samples.
    return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.int16)


def _read_any(path: str, sample_rate: int) -> np.ndarray:
    """Slow path: any format soundfile/audioread read, converted to int16 mono at sample_rate.

    These are the two readers librosa.load tries, called directly: importing
    librosa itself takes seconds. soundfile is read in blocks, so a header that
    claims an absurd length allocates only what the file really decodes to.
    """
    import soundfile

    try:
        with soundfile.SoundFile(path) as source:
            file_rate = source.samplerate
            block = max(1, (1 << 20) // max(1, source.channels))  # at most 4 MiB of float32
            parts = []
            while True:
                data = source.read(block, dtype="float32", always_2d=True)
                if len(data):
                    parts.append(data.mean(axis=1))
                if len(data) < block:
                    break
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    except Exception as sf_error:  # noqa: BLE001  (soundfile raises several types)
        try:
            audio, file_rate = _read_audioread(path)
        except Exception:  # noqa: BLE001  (audioread too)
            raise ValueError(f"{path}: unreadable audio ({_one_line(sf_error)})") from None
    if audio.size and file_rate != sample_rate:
        if file_rate < MIN_FILE_SAMPLE_RATE:
            raise ValueError(f"{path}: implausible sample rate {file_rate} Hz "
                             f"(under {MIN_FILE_SAMPLE_RATE} Hz: a damaged header?)")
        try:
            audio = _resample(audio, int(file_rate), sample_rate)
        except Exception as error:  # noqa: BLE001  (soxr/librosa on absurd rates or sizes)
            raise ValueError(f"{path}: could not resample from {file_rate} Hz "
                             f"({_one_line(error)})") from None
    audio = np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0)  # garbage read as float
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _read_audioread(path: str) -> Tuple[np.ndarray, int]:
    """Decodes with audioread (ffmpeg, GStreamer, ... where installed) to float32 mono.

    Raises whatever the backend raises on a malformed file; _read_any turns it into ValueError.
    """
    import audioread

    with audioread.audio_open(path) as source:  # yields 16-bit little-endian PCM blocks
        file_rate, channels = source.samplerate, max(1, source.channels)
        data = b"".join(source)
    audio = np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    audio = audio[:len(audio) // channels * channels].reshape(-1, channels).mean(axis=1)
    return audio, int(file_rate)


def _resample(audio: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """librosa.resample's default (soxr 'HQ'), without librosa's slow first import."""
    try:
        import soxr
    except ImportError:
        import librosa
        return librosa.resample(audio, orig_sr=file_rate, target_sr=sample_rate)
    return soxr.resample(audio, file_rate, sample_rate, quality="HQ").astype(np.float32)


def audio_files(folder: str) -> List[str]:
    """The audio files (every format in AUDIO_EXTENSIONS) directly in folder, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(AUDIO_EXTENSIONS) and
                  os.path.isfile(os.path.join(folder, name)))


def word_folder_files(folder: str) -> List[str]:
    """The audio files of every sub-folder of folder (<folder>/<word>/<clip>), sorted."""
    if not os.path.isdir(folder):
        return []
    words = sorted(entry for entry in os.listdir(folder) if os.path.isdir(os.path.join(folder, entry)))
    return [path for word in words for path in audio_files(os.path.join(folder, word))]


def load_clips(paths: Sequence[str], sample_rate: int, desired_samples: int,
               cache_dir: Optional[str] = None) -> Tuple[np.ndarray, List[int], List[str]]:
    """Reads many files (compressed ones in parallel: _decode_clips).

    Returns the clips as an int16 array [n, desired_samples] for the files that
    could be read, their positions in paths, and one error line per file that
    could not. With cache_dir, every folder holding compressed files is decoded
    whole, once, and kept there (see ClipCache), so that any selection of its
    files (another seed, --unknown_percentage, partition) loads from the cache.
    """
    if not cache_dir or all(path.lower().endswith(".wav") for path in paths):
        return _decode_clips(paths, sample_rate, desired_samples)
    clip_of: Dict[str, np.ndarray] = {}
    error_of: Dict[str, str] = {}
    paths_of: Dict[str, set] = {}
    for path in paths:
        paths_of.setdefault(os.path.dirname(path), set()).add(path)
    cached_count = decoded_count = 0
    for folder in sorted(paths_of):
        members = sorted(set(audio_files(folder)) | paths_of[folder])
        cache = ClipCache(cache_dir, members, sample_rate, desired_samples)
        entry = cache.load()
        if entry is None:
            entry = _decode_clips(members, sample_rate, desired_samples)
            cache.save(*entry)
            decoded_count += len(members)
        else:
            cached_count += len(members)
        audio, kept, errors = entry
        clip_of.update((members[i], audio[row]) for row, i in enumerate(kept))
        failed = sorted(set(range(len(members))) - set(kept))
        error_of.update((members[i], error) for i, error in zip(failed, errors))
    if cached_count:
        print(f"Loaded {cached_count} decoded clips of {len(paths_of)} folders from the cache {cache_dir}")
    if decoded_count:
        print(f"Decoded {decoded_count} clips and kept them in the cache {cache_dir}")
    kept = [i for i, path in enumerate(paths) if path in clip_of]
    audio = np.zeros((len(kept), desired_samples), dtype=np.int16)
    for row, i in enumerate(kept):
        audio[row] = clip_of[paths[i]]
    return audio, kept, [error_of[path] for path in paths if path not in clip_of]


def _decode_clips(paths: Sequence[str], sample_rate: int, desired_samples: int
                  ) -> Tuple[np.ndarray, List[int], List[str]]:
    """load_clips without a cache: (clips, positions of the readable files, error lines).

    .wav files of 16-bit mono PCM at sample_rate are read here, one after another:
    parsing them holds the GIL, and threads would only wait for each other (3x slower on
    2 cores, 2,738 WAVs). Every other file is decoded in parallel: decoders release the GIL.
    """
    def read(path: str, direct: bool):
        try:
            audio = _read_pcm16(path, sample_rate) if direct else read_audio(path, sample_rate)
            return None if audio is None else _fit(path, audio, desired_samples)
        except ValueError as error:
            return str(error)

    wavs = [path for path in paths if path.lower().endswith(".wav")]
    _read_ahead(wavs)
    direct = dict(zip(wavs, [read(path, True) for path in wavs]))
    results = [direct.get(path) for path in paths]
    others = [i for i, result in enumerate(results) if result is None]
    if others:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            for i, result in zip(others, pool.map(lambda i: read(paths[i], False), others)):
                results[i] = result
    kept = [i for i, result in enumerate(results) if not isinstance(result, str)]
    errors = [result for result in results if isinstance(result, str)]
    audio = np.zeros((len(kept), desired_samples), dtype=np.int16)
    for row, i in enumerate(kept):
        audio[row] = results[i]
    return audio, kept, errors


def _read_ahead(paths: Sequence[str]) -> None:
    """Asks the OS to read every file now (posix_fadvise WILLNEED, where there is one): files
    not yet in memory then come from the disk in parallel while they are parsed one by one
    (2,738 WAVs: 0.4 s from the disk without it, 0.17 s with it, 0.12 s from memory)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # reported when it is read
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(descriptor)


class ClipCache:
    """Decoded clips of one file list (a folder's) on disk: <cache_dir>/<key>/{audio.npy,index.json}.

    The key is a SHA-1 of the sample rate, the clip length and every file's
    path, size and modification time, so any change to the list or a file
    decodes again. A cache entry is written to a temporary folder and renamed
    into place: an interrupted run leaves no half-written entry.
    """

    def __init__(self, cache_dir: str, paths: Sequence[str], sample_rate: int, desired_samples: int):
        digest = hashlib.sha1(json.dumps([sample_rate, desired_samples]).encode())
        for path in paths:
            try:
                stat = os.stat(path)
                digest.update(json.dumps([os.path.abspath(path), stat.st_size,
                                          stat.st_mtime_ns]).encode())
            except OSError:
                digest.update(json.dumps([os.path.abspath(path), None]).encode())
        self.cache_dir = cache_dir
        self.folder = os.path.join(cache_dir, digest.hexdigest())
        self.count = len(paths)

    def load(self) -> Optional[Tuple[np.ndarray, List[int], List[str]]]:
        """The cached (audio, kept, errors), or None when there is no usable entry."""
        try:
            with open(os.path.join(self.folder, "index.json")) as handle:
                index = json.load(handle)
            audio = np.load(os.path.join(self.folder, "audio.npy"), mmap_mode="r")  # rows read on use
        except (OSError, ValueError):
            return None
        if index.get("count") != self.count or len(audio) != len(index["kept"]):
            return None
        return audio, list(index["kept"]), list(index["errors"])

    def save(self, audio: np.ndarray, kept: List[int], errors: List[str]) -> None:
        """Writes the entry atomically; a cache that cannot be written is only a warning."""
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            staging = tempfile.mkdtemp(dir=self.cache_dir, prefix=".partial-")
            np.save(os.path.join(staging, "audio.npy"), audio)
            with open(os.path.join(staging, "index.json"), "w") as handle:
                json.dump({"count": self.count, "kept": kept, "errors": errors}, handle)
            try:
                os.replace(staging, self.folder)
            except OSError:  # another run wrote the same entry first
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as error:
            print(f"warning: could not write --audio_cache_dir {self.cache_dir}: {error}",
                  file=sys.stderr)


def report_unreadable(errors: Sequence[str]) -> None:
    """Warns about files that were skipped."""
    for line in errors[:20]:
        print(f"warning: skipped {line}", file=sys.stderr)
    if len(errors) > 20:
        print(f"warning: skipped {len(errors) - 20} more unreadable files", file=sys.stderr)


def load_background_noise(folders: Sequence[str], sample_rate: int) -> List[np.ndarray]:
    """The long noise recordings in folders (every audio format), as float32 arrays in [-1, 1]."""
    noises = []
    for path in [path for folder in folders for path in audio_files(folder)]:
        try:
            audio = read_audio(path, sample_rate)
        except ValueError as error:
            report_unreadable([str(error)])
            continue
        if audio.size:
            noises.append(audio.astype(np.float32) / 32768.0)
    return noises
