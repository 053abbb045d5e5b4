"""The label vocabulary: the two labels every model has, --wanted_words, and a labels file.

A model's labels are _silence_ (index 0), _unknown_ (index 1), then the wanted words in
their --wanted_words order (prepare_words_list), as in Arm's and TensorFlow's scripts; a
labels file (Arm's labels.txt, --labels) lists them one per line. No TensorFlow.
"""
import argparse
from typing import List, Sequence

from kws.cli import UsageError

SILENCE_LABEL = "_silence_"
UNKNOWN_WORD_LABEL = "_unknown_"
SILENCE_INDEX = 0
UNKNOWN_WORD_INDEX = 1
DEFAULT_WANTED_WORDS = "yes,no,up,down,left,right,on,off,stop,go"


def add_label_flags(parser: argparse.ArgumentParser) -> None:
    """--wanted_words: the labels of a model are _silence_, _unknown_ and these."""
    parser.add_argument("--wanted_words", default=DEFAULT_WANTED_WORDS,
                        help="Words to use (others are added to the _unknown_ label).")


def add_labels_file_flag(parser: argparse.ArgumentParser) -> None:
    """--labels: a file of a model's labels, instead of --wanted_words."""
    parser.add_argument("--labels", default=None,
                        help="File of labels, one per line, in the model's output order "
                             "(default: _silence_, _unknown_ and --wanted_words).")


def wanted_words(text: str) -> List[str]:
    """A --wanted_words value as its list of words, checked."""
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if not words:
        raise UsageError("--wanted_words is empty; expected comma-separated words such as yes,no")
    if len(set(words)) != len(words):
        raise UsageError(f"--wanted_words lists a word twice: {text}")
    return words


def wanted_words_from_flags(args: argparse.Namespace) -> List[str]:
    """The --wanted_words list, checked."""
    return wanted_words(args.wanted_words)


def prepare_words_list(wanted: Sequence[str]) -> List[str]:
    """The labels of a model: silence, unknown, then the wanted words."""
    return [SILENCE_LABEL, UNKNOWN_WORD_LABEL] + list(wanted)


def words_list_from_flags(args: argparse.Namespace) -> List[str]:
    """The labels of the flags: _silence_, _unknown_ and --wanted_words."""
    return prepare_words_list(wanted_words_from_flags(args))


def read_labels(path: str) -> List[str]:
    """Labels from a file, one per line (like Arm's labels.txt)."""
    try:
        with open(path) as handle:
            labels = [line.strip() for line in handle if line.strip()]
    except OSError as error:
        raise UsageError(f"--labels {path}: {error.strerror or error}")
    if not labels:
        raise UsageError(f"--labels {path} is empty; expected one label per line")
    return labels


def labels_from_flags(args: argparse.Namespace) -> List[str]:
    """A model's labels: the --labels file, else _silence_, _unknown_ and --wanted_words."""
    return read_labels(args.labels) if args.labels else words_list_from_flags(args)
