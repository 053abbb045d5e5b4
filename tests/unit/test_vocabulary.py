"""kws.vocabulary: the labels every model has, --wanted_words and labels files."""
import pytest

from kws import cli, vocabulary
from kws.cli import UsageError


def parse(*argv):
    parser = cli.make_parser("vocabulary")
    vocabulary.add_label_flags(parser)
    vocabulary.add_labels_file_flag(parser)
    return parser.parse_args(list(argv))


def test_a_model_has_silence_and_unknown_first_then_the_wanted_words_in_order():
    assert vocabulary.words_list_from_flags(parse("--wanted_words", "Yes, no ,up")) == \
        ["_silence_", "_unknown_", "yes", "no", "up"]
    labels = vocabulary.words_list_from_flags(parse())
    assert labels.index(vocabulary.SILENCE_LABEL) == vocabulary.SILENCE_INDEX
    assert labels.index(vocabulary.UNKNOWN_WORD_LABEL) == vocabulary.UNKNOWN_WORD_INDEX
    assert labels[2:] == vocabulary.DEFAULT_WANTED_WORDS.split(",")


@pytest.mark.parametrize("value, message", [(",", "empty"), ("yes,no,yes", "twice")])
def test_a_bad_wanted_words_is_one_line(value, message):
    with pytest.raises(UsageError, match=message):
        vocabulary.wanted_words(value)


def test_a_labels_file_wins_over_wanted_words_and_bad_files_are_one_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("_silence_\n\n_unknown_\nmarvin\n")
    assert vocabulary.labels_from_flags(parse("--labels", str(path), "--wanted_words", "yes")) == \
        ["_silence_", "_unknown_", "marvin"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        vocabulary.read_labels(str(tmp_path / "empty.txt"))
    with pytest.raises(UsageError, match="--labels"):
        vocabulary.read_labels(str(tmp_path / "missing.txt"))
