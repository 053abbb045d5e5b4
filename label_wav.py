"""Labels audio files with a trained model: the top labels of a clip, the keywords of a recordings.

    python label_wav.py --tflite_path ds_cnn_quantized.tflite --labels labels.txt \\
        --window_size_ms 40 --window_stride_ms 20 --dct_coefficient_count 10 clip.wav
    python label_wav.py --model_architecture dnn --model_size_info 128 128 128 \\
        --checkpoint <ckpt> --wav a.wav b.mp3

The model is a .tflite (--tflite_path) or a checkpoint (--checkpoint with the
model flags). Files may be in any format and at any sample rate that librosa
reads; they are converted to mono at --sample_rate. A file of at most
--clip_duration_ms is padded to a clip and its --how_many_labels top labels are
printed. A longer file is a recording: the model slides over it as a wake-word
device runs it (test_streaming_accuracy.py's detection flags), and each
detection is printed as one line `time_ms label score` (the start of the window
that detected it; _silence_ and _unknown_ are never detections). Labels come
from --labels (a file, one label per line, like Arm's labels.txt) or else from
--wanted_words. A .tflite that convert.py wrote carries its labels, fingerprint
settings (and a wake-word model its threshold) as metadata, which replace those
flags (kws/runtime/metadata.py). A raw-audio .tflite (convert.py --include_features)
is fed the audio itself.
"""
import argparse
from typing import List, Sequence

import numpy as np

from kws import cli, features, vocabulary
from kws.cli import UsageError
from kws.data import audio_io
from kws.detection import detector, recordings, scoring
from kws.runtime import metadata as model_metadata


def top_labels(scores: np.ndarray, labels: Sequence[str], how_many: int) -> List[tuple]:
    """(label, score) of the how_many highest scores, best first."""
    order = np.argsort(-scores, kind="stable")[:how_many]
    return [(labels[i], float(scores[i])) for i in order]


def detection_lines(audio: np.ndarray, model_settings: features.ModelSettings,
                    scorer: detector.Scorer, labels: Sequence[str],
                    settings: detector.DetectionSettings) -> List[str]:
    """`time_ms label score` of each keyword detected in a recordings."""
    stream = detector.stream_scores(audio, model_settings, scorer, labels, settings)
    detections = stream.detections(settings.detection_threshold, settings.suppression_ms)
    if not detections:
        return [f"no keyword above --detection_threshold {settings.detection_threshold:g}"]
    return [f"{d.time_ms:.0f} {d.label} {d.score:.5f}" for d in detections]


def main(args: argparse.Namespace) -> None:
    args = cli.replace_flags(args, model_metadata.carried_flags_from_flags(args))
    paths = list(args.wav or []) + list(args.files or [])
    if not paths:
        raise UsageError("no audio files: give them as arguments or with --wav")
    labels = vocabulary.labels_from_flags(args)
    model_settings = features.settings_from_flags(args)
    score = scoring.scorer_from_flags(args, model_settings, labels)
    audios, kept, errors = recordings.read_recordings(paths, model_settings.sample_rate)
    if errors:
        if not audios:
            raise UsageError(errors[0] + ("" if len(errors) == 1 else f" (and {len(errors) - 1} more)"))
        audio_io.report_unreadable(errors)
    desired = model_settings.desired_samples
    clip_rows = [row for row, audio in enumerate(audios) if len(audio) <= desired]
    scores = {}
    if clip_rows:
        clips = np.stack([np.pad(audios[row], (0, desired - len(audios[row]))) for row in clip_rows])
        inputs = (clips if detector.takes_audio(score)
                  else features.Fingerprinter(model_settings)(clips))
        scores = dict(zip(clip_rows, score(inputs)))
    settings = detector.detection_settings_from_flags(args)
    for row, position in enumerate(kept):
        if len(paths) > 1:
            print(f"{paths[position]}:")
        if row not in scores:
            print("\n".join(detection_lines(audios[row], model_settings, score, labels, settings)))
            continue
        for label, value in top_labels(scores[row], labels, args.how_many_labels):
            print(f"{label} (score = {value:.5f})")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="Audio files to label.")
    parser.add_argument("--wav", nargs="+", default=None, help="Audio files to label.")
    parser.add_argument("--how_many_labels", type=cli.positive_int, default=3,
                        help="How many labels to print per clip.")
    scoring.add_scorer_flags(parser)
    detector.add_detection_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
