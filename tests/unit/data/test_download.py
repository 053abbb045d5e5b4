"""kws/data/download.py: a known Speech Commands archive is checked (size, SHA-256) before extraction,
with one line saying what to delete; here on a small local archive under a patched table."""
import hashlib
import tarfile

import numpy as np
import pytest

from kws.cli import UsageError
from kws.data import download, speech_commands

from conftest import write_wav


def fake_archive(tmp_path):
    """A small tar.gz holding one clip, and its file:// URL."""
    clip = write_wav(tmp_path / "clip.wav", np.zeros(1600))
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(clip, arcname="yes/0a0a0a0a_nohash_0.wav")
    return archive, archive.as_uri()


def test_known_archives_include_the_default_url():
    assert download.archive_key(speech_commands.DEFAULT_DATA_URL) in download.KNOWN_ARCHIVES
    assert download.archive_key("http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz") \
        in download.KNOWN_ARCHIVES


@pytest.mark.parametrize("damage", ["none", "truncated", "altered"])
def test_known_archive_is_checked_before_extraction(tmp_path, monkeypatch, capsys, damage):
    archive, url = fake_archive(tmp_path)
    content = archive.read_bytes()
    monkeypatch.setattr(download, "KNOWN_ARCHIVES", {download.archive_key(url): (
        len(content), hashlib.sha256(content).hexdigest())})
    if damage == "truncated":
        archive.write_bytes(content[:len(content) // 2])
    elif damage == "altered":
        archive.write_bytes(content[:100] + bytes([content[100] ^ 1]) + content[101:])
    data = tmp_path / "data"
    if damage == "none":
        download.maybe_download_and_extract_dataset(url, str(data))
        assert (data / "yes" / "0a0a0a0a_nohash_0.wav").is_file()
        assert "SHA-256" in capsys.readouterr().out
        return
    with pytest.raises(UsageError) as error:
        download.maybe_download_and_extract_dataset(url, str(data))
    message = str(error.value)
    downloaded = data / "speech_commands_v0.02.tar.gz"
    assert "\n" not in message and f"delete {downloaded}" in message
    assert ("truncated" if damage == "truncated" else "SHA-256") in message
    assert not (data / "yes").exists()  # nothing extracted
