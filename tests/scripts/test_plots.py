"""kws/plots.py and --plot_dir: PNG files of the expected size whose drawn counts, labels, curves
and operating point are the figures' (checked on the figures' artists, never on pixels)."""
import json

import numpy as np
import pytest
from test_tflite_eval import dnn_files  # noqa: F401  (the module's fixture)

import test_streaming_accuracy
import test_tflite
from kws import cli, plots

from conftest import TINY_FEATURE_FLAGS, make_speech_commands, write_wav

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def png_size(path) -> tuple:
    """(width, height) of a PNG file, from its IHDR chunk."""
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def expected_size(figure) -> tuple:
    width, height = figure.get_size_inches()
    return round(width * plots.DPI), round(height * plots.DPI)


def cell_counts(figure, size: int) -> np.ndarray:
    """The counts drawn in the cells of a confusion-matrix figure, as a matrix."""
    matrix = np.full((size, size), -1)
    for text in figure.axes[0].texts:
        column, row = text.get_position()
        matrix[int(row), int(column)] = int(text.get_text())
    return matrix


def test_confusion_figure_draws_every_count_and_both_label_axes():
    matrix = [[5, 0, 1, 0], [0, 7, 0, 2], [1, 0, 9, 0], [0, 3, 0, 4]]
    figure = plots.confusion_figure(matrix, LABELS, "title")
    axes = figure.axes[0]
    np.testing.assert_array_equal(cell_counts(figure, 4), matrix)
    assert [label.get_text() for label in axes.get_xticklabels()] == LABELS
    assert [label.get_text() for label in axes.get_yticklabels()] == LABELS
    assert axes.get_xlabel() == "predicted label" and axes.get_ylabel() == "true label"


def test_test_tflite_draws_the_matrices_of_its_json(dnn_files, tmp_path, monkeypatch):
    drawn = {}
    save = plots.save

    def keep(figure, path):
        drawn[path] = (cell_counts(figure, 4), expected_size(figure))
        return save(figure, path)

    monkeypatch.setattr(plots, "save", keep)
    data_dir = tmp_path / "data"
    make_speech_commands(data_dir, words=("yes", "no"), unknown_words=("cat",))
    test_tflite.main(test_tflite.build_parser().parse_args(
        ["--tflite_path", dnn_files["quantized"], "--data_dir", str(data_dir), "--data_url", "",
         "--wanted_words", "yes,no", "--output_json", str(tmp_path / "figures.json"),
         "--plot_dir", str(tmp_path / "plots")] + TINY_FEATURE_FLAGS))
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert sorted(drawn) == sorted(str(tmp_path / "plots" / f"confusion_matrix_{name}.png")
                                   for name in figures)
    for name, result in figures.items():
        counts, size = drawn[str(tmp_path / "plots" / f"confusion_matrix_{name}.png")]
        np.testing.assert_array_equal(counts, result["confusion_matrix"])
        assert png_size(tmp_path / "plots" / f"confusion_matrix_{name}.png") == size


def sweep_rows():
    rows = []
    for threshold in np.linspace(0, 0.99, 100):
        false_alarms = max(0.0, 40 * (0.6 - threshold))
        rows.append({"threshold": float(threshold), "miss_rate": float(threshold ** 2),
                     "false_alarms_per_hour": false_alarms})
    return rows


def test_detection_figure_is_log_scale_with_the_operating_point():
    rows = sweep_rows()
    point = next(row for row in rows if row["false_alarms_per_hour"] <= 1.0)
    figure = plots.detection_figure(rows, point, "title")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    curve, marked = axes.lines
    np.testing.assert_allclose(curve.get_ydata(), [row["miss_rate"] for row in rows])
    assert min(curve.get_xdata()) == plots.ZERO_FALSE_ALARMS  # no false alarm, on the log axis
    assert list(marked.get_xdata()) == [point["false_alarms_per_hour"]]
    assert list(marked.get_ydata()) == [point["miss_rate"]]
    assert f"threshold {point['threshold']:g}" in axes.texts[0].get_text()


def test_streaming_sweep_writes_the_detection_curve(dnn_files, tmp_path):
    rng = np.random.default_rng(2)
    recording = write_wav(tmp_path / "recording.wav", rng.integers(-3000, 3000, 16000 * 5))
    (tmp_path / "truth.txt").write_text("yes,1000\nno,3000\n")
    flags = ["--tflite_path", dnn_files["quantized"], "--wanted_words", "yes,no", "--wav",
             str(recording), "--ground_truth", str(tmp_path / "truth.txt"),
             "--plot_dir", str(tmp_path / "plots")] + TINY_FEATURE_FLAGS
    parser = test_streaming_accuracy.build_parser()
    with pytest.raises(cli.UsageError, match="--sweep_thresholds"):
        test_streaming_accuracy.main(parser.parse_args(flags))
    test_streaming_accuracy.main(parser.parse_args(flags + ["--sweep_thresholds"]))
    assert png_size(tmp_path / "plots" / "detection_curve_recording_wav.png") == (700, 500)


def test_training_figure_draws_the_history():
    history = {"train": [(100, 0.5, 1.2), (200, 0.7, 0.8)], "validation": [(200, 0.65)]}
    figure = plots.training_figure(history, "title")
    accuracy, loss = figure.axes
    train, validation = accuracy.lines
    assert list(train.get_xdata()) == [100, 200] and list(train.get_ydata()) == [0.5, 0.7]
    assert list(validation.get_ydata()) == [0.65] and list(loss.lines[0].get_ydata()) == [1.2, 0.8]
    assert loss.get_xlabel() == "step"


def test_plot_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit:
        test_tflite.build_parser().parse_args(["--tflite_path", "x", "--plot_dir",
                                               str(tmp_path / "file")])
    assert exit.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
