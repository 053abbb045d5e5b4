"""Measures a model on a long recording as a wake-word device runs it: hits, false alarms.

    python test_streaming_accuracy.py --wav work/stream.wav --ground_truth work/stream_labels.txt \\
        --tflite_path Pretrained_models/DS_CNN/DS_CNN_S/ds_cnn_s_quantized.tflite \\
        --window_size_ms 40 --window_stride_ms 20 --dct_coefficient_count 10 --sweep_thresholds

As TensorFlow's examples/speech_commands/test_streaming_accuracy.py: the model
(--tflite_path, or --checkpoint with the model flags) scores the last clip every
--clip_stride_ms, the scores are averaged over --average_window_ms, a keyword above
--detection_threshold is detected unless another was less than --suppression_ms
before (_silence_ and _unknown_ never are), and detections are matched to the
ground truth (`label,time_ms` lines, e.g. from generate_streaming_test_wav.py)
within --time_tolerance_ms. Prints the hit rate, the wrong-label rate, false alarms
per hour and the mean latency (from the start of the keyword's clip to the end of
the window that detected it); --sweep_thresholds adds false alarms per hour against
miss rate over thresholds, and --plot_dir draws that curve. A streaming .tflite (convert.py
--streaming) runs natively: one call per its own stride over the whole recording, its states
kept. A .tflite that convert.py wrote carries its labels and fingerprint settings
(kws/runtime/metadata.py): those flags are not needed.
"""
import argparse
import time

from kws import cli, evaluation, features, plots, vocabulary
from kws.detection import detector, recordings, scoring
from kws.runtime import metadata

FALSE_ALARMS_PER_HOUR = 1.0  # the operating point read off the sweep


def main(args: argparse.Namespace) -> None:
    args = cli.replace_flags(args, metadata.carried_flags_from_flags(args))
    if args.plot_dir and not args.sweep_thresholds:
        raise cli.UsageError("--plot_dir draws the detection curve of --sweep_thresholds: add it")
    labels = vocabulary.labels_from_flags(args)
    model_settings = features.settings_from_flags(args)
    scorer = scoring.scorer_from_flags(args, model_settings, labels)
    settings = detector.detection_settings_from_flags(args)
    truth = recordings.read_ground_truth(args.ground_truth)
    audio = recordings.read_recording(args.wav, model_settings.sample_rate)
    duration_s = len(audio) / model_settings.sample_rate
    start = time.perf_counter()
    stream = detector.stream_scores(audio, model_settings, scorer, labels, settings)
    scoring_s = time.perf_counter() - start
    print(f"Scored {len(stream.times_ms)} windows of {duration_s:.1f} s of {args.wav} every "
          f"{stream.stride_ms:g} ms in {scoring_s:.1f} s")
    detections = stream.detections(settings.detection_threshold, settings.suppression_ms)
    clip_ms = model_settings.clip_duration_ms
    figures = detector.match(detections, truth, args.time_tolerance_ms, duration_s,
                              clip_ms).figures()
    print(f"At threshold {settings.detection_threshold:g}: {detector.format_figures(figures)}")
    figures.update(settings=dict(vars(settings), time_tolerance_ms=args.time_tolerance_ms),
                   windows=len(stream.times_ms), scoring_s=scoring_s)
    if args.sweep_thresholds:
        rows = detector.sweep(stream, truth, settings.suppression_ms, args.time_tolerance_ms,
                               duration_s, clip_ms)
        print(detector.format_sweep(rows))
        point = detector.threshold_for_false_alarms(rows, FALSE_ALARMS_PER_HOUR)
        print(f"Lowest threshold with at most {FALSE_ALARMS_PER_HOUR:g} false alarm per hour: "
              + (f"{point['threshold']:g}: {detector.format_figures(point)}" if point
                 else "none of the sweep's"))
        figures.update(sweep=rows, at_1_false_alarm_per_hour=point)
        plots.detection_curve(args.plot_dir, rows, point, args.wav)
    if args.output_json:
        evaluation.write_json(args.output_json, figures)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--wav", required=True, help="The recording (any format librosa reads).")
    parser.add_argument("--ground_truth", required=True,
                        help="Its keywords: one label,time_ms line each (the start of the clip).")
    scoring.add_scorer_flags(parser)
    detector.add_detection_flags(parser)
    detector.add_accuracy_flags(parser)
    plots.add_plot_flag(parser, "the detection curve of --sweep_thresholds (miss rate against "
                        "false alarms per hour, the operating point marked)")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
