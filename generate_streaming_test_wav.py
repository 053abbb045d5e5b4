"""Writes a long recording of keywords and unknown words in noise, and its ground truth.

    python generate_streaming_test_wav.py --test_dir ../shared/data/speech_commands_test_v0.02_dev \\
        --background_noise_dir ../shared/data/_background_noise_ --duration_s 600 \\
        --output_wav work/stream.wav --output_ground_truth work/stream_labels.txt

As TensorFlow's examples/speech_commands/generate_streaming_test_wav.py: one word
every clip + --word_gap_ms at a random time in that slot, --unknown_percentage of
them unknown words, each at a random gain (--word_gain_db), over noise segments at
random volumes up to --background_volume (silence without --background_noise_dir).
The words come from an evaluation folder (--test_dir) or from --partition of
--data_dir. The ground truth has one `label,time_ms` line per keyword, the start of
its clip; test_streaming_accuracy.py measures a model on the pair. The same flags
and --seed give the same files.
"""
import argparse

from kws import cli
from kws.detection import recordings


def main(args: argparse.Namespace) -> None:
    mixing = recordings.mixing_from_flags(args)
    words = recordings.words_from_flags(args)
    noises = (recordings.load_noise(args.background_noise_dir, args.sample_rate)
              if args.background_noise_dir else [])
    audio, truth = recordings.generate(words, noises, mixing)
    cli.write_atomically(args.output_wav, recordings.wav_bytes(audio, args.sample_rate))
    recordings.write_ground_truth(args.output_ground_truth, truth)
    print(f"Words: {', '.join(f'{label} {len(clips)}' for label, clips in words.keywords.items())}, "
          f"unknown {len(words.unknown)} clips; noise: {len(noises)} recordings")
    print(f"Wrote {args.output_wav}: {recordings.describe(truth, mixing)}")
    print(f"Wrote {args.output_ground_truth}")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    recordings.add_generation_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
