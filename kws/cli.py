"""Command-line plumbing shared by every script: flag types, one-line errors, exit codes,
atomic writes. It imports no TensorFlow and changes nothing when imported (kws.tf_env
selects tf-keras, when TensorFlow is first imported)."""
import argparse
import contextlib
import os
import sys
from typing import Callable, Dict, Iterator, Optional, Sequence


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hides what C++ libraries print to stderr (TensorFlow's and the TFLite interpreter's
    start-up lines) unless TF_CPP_MIN_LOG_LEVEL is 0 or 1. Python exceptions are not affected."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") in ("0", "1"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (at most 300 characters)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else error.__class__.__name__


class UsageError(Exception):
    """Bad input from the user: a flag value or a file. Reported as one line."""


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a float that is zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def comma_list(item_type: Callable[[str], object]) -> Callable[[str], list]:
    """argparse type: a comma-separated list, e.g. '15000,3000'."""

    def parse(text: str) -> list:
        try:
            return [item_type(item) for item in text.split(",") if item.strip()]
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")

    return parse


_NOT_GIVEN = object()


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage dump), and which records the
    flags given on the command line (given_flags)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        probe = argparse.Namespace(**{action.dest: _NOT_GIVEN for action in self._actions
                                      if action.dest != argparse.SUPPRESS})
        super().parse_known_args(args, probe)  # a flag not given keeps the marker
        parsed._given_flags = frozenset(dest for dest, value in vars(probe).items()
                                        if value is not _NOT_GIVEN)
        return parsed, extras


def given_flags(args: argparse.Namespace) -> frozenset:
    """The dests of the flags given on the command line (empty for a Namespace that no
    parser of make_parser made)."""
    return getattr(args, "_given_flags", frozenset())


def replace_flags(args: argparse.Namespace, values: Dict[str, object]) -> argparse.Namespace:
    """args with values (by dest) in place of its flags' (a copy that keeps given_flags;
    args itself when values is empty)."""
    if not values:
        return args
    return argparse.Namespace(**{**vars(args), **values})


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser for one of the top-level scripts."""
    return _Parser(description=description,
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def run(main: Callable[[argparse.Namespace], Optional[int]],
        parser: argparse.ArgumentParser,
        argv: Optional[Sequence[str]] = None) -> None:
    """Parses the flags, runs main, and turns user errors into one line and exit 2."""
    args = parser.parse_args(argv)
    try:
        code = main(args)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; everything saved so far is kept", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def write_atomically(path: str, data: bytes) -> None:
    """Writes data to path through a temporary file and a rename: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
