"""kws.detection.scoring: the labels and the model that the flags name."""
import pytest

from kws import cli, vocabulary
from kws.cli import UsageError
from kws.detection import scoring


def parse(*argv):
    parser = cli.make_parser("scoring")
    scoring.add_scorer_flags(parser)
    return parser.parse_args(list(argv))


def test_labels_come_from_the_labels_file_else_from_the_wanted_words(tmp_path):
    assert vocabulary.labels_from_flags(parse("--wanted_words", "yes,no")) == \
        ["_silence_", "_unknown_", "yes", "no"]
    labels = tmp_path / "labels.txt"
    labels.write_text("_silence_\n_unknown_\nmarvin\n")
    assert vocabulary.labels_from_flags(parse("--labels", str(labels))) == \
        ["_silence_", "_unknown_", "marvin"]


def test_no_model_or_two_models_is_one_clear_line():
    with pytest.raises(UsageError, match="--tflite_path"):
        scoring.scorer_from_flags(parse(), None, ["a"])
    with pytest.raises(UsageError, match="not both"):
        scoring.scorer_from_flags(parse("--tflite_path", "a.tflite", "--checkpoint", "c"), None, ["a"])
