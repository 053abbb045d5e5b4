"""Downloading a data set archive (--data_url) and extracting it, once.

The Speech Commands archives of download.tensorflow.org (v0.01, v0.02 and the
v0.02 test set) are checked against their published size and SHA-256 before
anything is extracted (KNOWN_ARCHIVES: the values of TensorFlow Datasets' and
torchaudio's checksum tables), so that a truncated or altered archive is one
line saying which file to delete; an archive of another URL is extracted as it is.
"""
import hashlib
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request

from kws.cli import UsageError

# download.tensorflow.org/data/<archive> -> (bytes, SHA-256), whatever the scheme or mirror.
KNOWN_ARCHIVES = {
    "download.tensorflow.org/data/speech_commands_v0.01.tar.gz":
        (1489096277, "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    "download.tensorflow.org/data/speech_commands_v0.02.tar.gz":
        (2428923189, "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
    "download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz":
        (112563277, "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
}
_HASH_CHUNK = 1 << 20


def archive_key(data_url: str) -> str:
    """The URL without its scheme and the storage.googleapis.com mirror's host: the key of
    KNOWN_ARCHIVES."""
    return re.sub(r"^[a-z]+://(storage\.googleapis\.com/)?", "", data_url.strip())


def check_archive(data_url: str, filepath: str) -> None:
    """UsageError saying to delete filepath when data_url is a known archive and filepath
    has not its size or SHA-256; nothing for other URLs."""
    known = KNOWN_ARCHIVES.get(archive_key(data_url))
    if known is None:
        return
    size, expected = known
    name = os.path.basename(filepath)
    again = f"delete {filepath} and run again to download it again"
    actual = os.path.getsize(filepath)
    if actual != size:
        what = "truncated (an interrupted download?)" if actual < size else "too long"
        raise UsageError(f"{filepath} is {actual:,} bytes, but {name} of {data_url} is {size:,}: "
                         f"{what}; {again}")
    digest = hashlib.sha256()
    with open(filepath, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise UsageError(f"{filepath} has the size of {name} of {data_url} but not its SHA-256 "
                         f"({digest.hexdigest()[:16]}..., expected {expected[:16]}...): the file "
                         f"is altered; {again}")
    print(f"Checked {filepath}: the size and SHA-256 of {name}")


def _print_progress(count: int, block_size: int, total_size: int) -> None:
    done = count * block_size
    if total_size > 0:
        sys.stdout.write(f"\r>> Downloading {100.0 * min(done, total_size) / total_size:5.1f}%")
    else:
        sys.stdout.write(f"\r>> Downloading {done / 1e6:.1f} MB")
    sys.stdout.flush()


def maybe_download_and_extract_dataset(data_url: str, data_dir: str) -> None:
    """Downloads and extracts the archive at data_url into data_dir, unless already done.

    Nothing happens when data_url is empty, or when data_dir already holds the
    extracted archive (a marker file records a completed extraction). A known archive
    is checked first (check_archive), whether just downloaded or already there.
    """
    if not data_url:
        return
    filename = data_url.split("/")[-1]
    marker = os.path.join(data_dir, f".extracted_{filename}")
    if os.path.exists(marker):
        return
    os.makedirs(data_dir, exist_ok=True)
    filepath = os.path.join(data_dir, filename)
    if not os.path.exists(filepath):
        partial = filepath + ".partial"
        try:
            urllib.request.urlretrieve(data_url, partial, _print_progress)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise UsageError(f"could not download --data_url {data_url} ({reason}); without network, "
                             f"pass --data_url '' and a local --data_dir")
        print()
        os.replace(partial, filepath)
        print(f"Downloaded {filename} ({os.path.getsize(filepath)} bytes)")
    check_archive(data_url, filepath)
    try:
        with tarfile.open(filepath, "r:gz") as archive:
            archive.extractall(data_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UsageError(f"could not extract {filepath}: {error}; delete it and download again")
    with open(marker, "w") as handle:
        handle.write(data_url + "\n")
