"""Downloading a data set archive (--data_url) and extracting it, once."""
import os
import sys
import tarfile
import urllib.error
import urllib.request

from cli import UsageError


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
    extracted archive (a marker file records a completed extraction).
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
    try:
        with tarfile.open(filepath, "r:gz") as archive:
            archive.extractall(data_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UsageError(f"could not extract {filepath}: {error}; delete it and download again")
    with open(marker, "w") as handle:
        handle.write(data_url + "\n")
