"""A wake-word detector from a typed word (and a few recordings): train_wake_word.py's stages.

    python train_wake_word.py --wake_word happy --output_dir work/happy [--recordings DIR]

Each stage keeps its outputs in --output_dir, written atomically, and a stage
whose outputs are there is skipped: an interrupted run started again with the
same flags goes on where it stopped (the flags are kept in settings.json and a
run with other flags is refused).

1. near misses (near_misses.json): words that sound like the wake word (kws/wake_word/near_misses.py);
2. synthesis (synthesized/, synthesized.json): the wake word said by every voice and
   variant of --engine (espeak-ng's English voices and variants, Piper's voices), and
   the near misses (kws/data/synthesis.py);
3. examples (embeddings.npz, representative.npy, negative_stream.wav): the augmented
   examples (kws/wake_word/data.py) through the frozen backbone, the calibration clips and
   the negative stream;
4. hard negatives (hard_negatives.npz): every window of a mining stream (--hard_negative_minutes
   of other words in noise, not the negative stream), one per detection stride, through the
   backbone;
5. head (head/): the head trained on the embeddings and those windows (kws/wake_word/model.py);
6. conversion (detector_no_threshold.tflite): backbone and head as one int8 .tflite;
7. threshold (threshold.json): the lowest threshold with at most --false_alarms_per_hour
   on the negative stream, scored by that .tflite as test_streaming_accuracy.py scores
   (its default detection flags);
8. the detector (<word>.tflite, <word>_report.json): the .tflite with the threshold in its
   metadata, its deployment report and a run under TensorFlow Lite for Microcontrollers.
TensorFlow is imported by the stages that need it (wake_word_model), not with this
module: the synthesis processes import the script again and need none.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
from typing import Callable, List, Optional, Tuple

import numpy as np

from kws import cli, features, vocabulary
from kws.cli import UsageError
from kws.data import audio_io, dataset, speech_commands, synthesis, synthesis_engines
from kws.detection import detector as detection
from kws.detection import recordings as test_recordings
from kws.runtime import metadata as model_metadata
from kws.runtime import report as tflite_report
from kws.runtime import tflite_model
from kws.runtime import tflm as tflm_runtime
from kws.training import checkpoints
from kws.wake_word import data, near_misses

DEFAULT_DATA_DIR = "../shared/data/speech_commands_v0.01_train"
DEFAULT_NOISE_DIR = "../shared/data/_background_noise_"
DEFAULT_BACKBONE = ("Pretrained_models/wake_words/backbone/ckpt --model_architecture ds_cnn "
                    "--model_size_info 5 172 10 4 2 1 172 3 3 2 2 172 3 3 1 1 172 3 3 1 1 "
                    "172 3 3 1 1 --dct_coefficient_count 10 --window_size_ms 40 "
                    "--window_stride_ms 20")
WAKE_WORD = re.compile(r"[a-z]+(['-][a-z]+)*")
LABELS = (vocabulary.SILENCE_LABEL, vocabulary.UNKNOWN_WORD_LABEL)
REPRESENTATIVE_CLIPS = 400  # calibration clips of the int8 conversion
TFLM_CHECK_CLIPS = 4
SLOT_S = 3  # one word every 3 s on average in a stream (kws/detection/recordings.py: 1 s clip + 2 s gap)


def add_flags(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """The flags of train_wake_word.py; without run, those of how a detector is made only (not
    --wake_word, --output_dir, --recordings: bench/bench_wake_word.py sets them per row)."""
    if run:
        parser.add_argument("--wake_word", required=True, help="The word to detect (letters "
                            "a-z; a phrase with hyphens: hey-jarvis).")
        parser.add_argument("--output_dir", required=True, help="Where every stage's outputs go.")
        parser.add_argument("--recordings", default=None,
                            help="A folder of recordings of the wake word (any audio format), "
                                 "added to the synthesized ones; each is cut to its loudest clip.")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help="The trained keyword model whose embedding the head reads: "
                             "'CHECKPOINT --model_architecture A --model_size_info ... "
                             "[fingerprint flags]', as train.py's --teacher.")
    parser.add_argument("--false_alarms_per_hour", type=cli.positive_float, default=1.0,
                        help="The false-alarm rate the threshold is chosen for.")
    source = parser.add_argument_group("data")
    source.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                        help="Real speech of other words (<word>/<clip> folders, a comma list): "
                             "the training partition's clips are negatives.")
    source.add_argument("--background_noise_dir", default=DEFAULT_NOISE_DIR,
                        help="Noise recordings mixed into every example and the streams.")
    speech_commands.add_split_flags(source)
    source.add_argument("--negative_clips", type=cli.positive_int, default=15000,
                        help="At most this many real clips of other words as negatives.")
    source.add_argument("--stream_minutes", type=cli.positive_int, default=120,
                        help="Length of the negative stream the threshold is chosen on.")
    source.add_argument("--hard_negative_minutes", type=cli.positive_int, default=120,
                        help="Length of the stream of other words (the examples' speakers, "
                             "clips that are no example) whose every window, one per detection "
                             "stride, the head learns as _unknown_ (hard negatives).")
    voices = parser.add_argument_group("synthesis")
    voices.add_argument("--engine", choices=synthesis_engines.ENGINES, default="both",
                        help="The synthesizers of the wake word and the near misses.")
    voices.add_argument("--synthesized_clips", type=int, default=1000,
                        help="Synthesized clips of the wake word (0: the recordings alone).")
    voices.add_argument("--near_misses", type=int, default=20,
                        help="How many near-miss words to synthesize as negatives.")
    voices.add_argument("--near_miss_clips", type=cli.positive_int, default=50,
                        help="Synthesized clips of each near miss.")
    voices.add_argument("--near_miss_words", type=cli.comma_list(str), default=[],
                        help="Near misses to use in any case (comma-separated).")
    voices.add_argument("--jobs", type=cli.positive_int, default=synthesis.available_cores(),
                        help="Processes synthesizing in parallel.")
    head = parser.add_argument_group("head")
    head.add_argument("--head_units", type=cli.positive_int, default=64,
                      help="Units of the head's hidden layer.")
    head.add_argument("--steps", type=cli.positive_int, default=3000, help="Training steps.")
    head.add_argument("--batch_size", type=cli.positive_int, default=256, help="Batch size.")
    head.add_argument("--learning_rate", type=cli.positive_float, default=0.001,
                      help="Adam's learning rate, decayed to zero on a cosine.")
    parser.add_argument("--seed", type=int, default=0, help="Fixes every random choice.")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run makes (the flags but --output_dir and --jobs, which change nothing made)."""

    wake_word: str
    recordings: Optional[str]
    backbone: str
    false_alarms_per_hour: float
    data_dir: str
    background_noise_dir: str
    validation_percentage: float
    testing_percentage: float
    negative_clips: int
    stream_minutes: int
    hard_negative_minutes: int
    engine: str
    synthesized_clips: int
    near_misses: int
    near_miss_clips: int
    near_miss_words: tuple
    head_units: int
    steps: int
    batch_size: int
    learning_rate: float
    seed: int

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Settings":
        values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}
        values["near_miss_words"] = tuple(word.strip().lower() for word in args.near_miss_words)
        values["wake_word"] = check_wake_word(args.wake_word)
        if min(args.near_misses, args.seed, args.synthesized_clips) < 0:
            raise UsageError("--near_misses, --synthesized_clips and --seed must be 0 or more")
        if not args.synthesized_clips and not args.recordings:
            raise UsageError("--synthesized_clips 0 needs --recordings: the detector needs its word")
        return cls(**values)


def check_wake_word(text: str) -> str:
    """The wake word in lower case; UsageError for one the synthesizers cannot speak."""
    word = text.strip().lower()
    if not WAKE_WORD.fullmatch(word):
        raise UsageError(f"--wake_word {text!r}: the synthesizers cannot speak it; give an English "
                         "word in the letters a-z (' and - inside, a phrase as hey-jarvis)")
    if not synthesis_engines.EspeakEngine().phonemes(word):
        raise UsageError(f"--wake_word {text!r}: espeak-ng finds no phonemes in it")
    return word


class Run:
    """One run of the stages over --output_dir."""

    def __init__(self, settings: Settings, output_dir: str, jobs: int,
                 say: Callable[[str], None] = print):
        self.settings, self.output_dir, self.jobs, self.say = settings, output_dir, jobs, say
        self.data_dirs = dataset.data_dirs_from_flag(settings.data_dir)
        self._backbone = None

    def path(self, *parts: str) -> str:
        return os.path.join(self.output_dir, *parts)

    @property
    def backbone(self):
        """The --backbone model, loaded at first use."""
        if self._backbone is None:
            self._backbone = _model().load_backbone(self.settings.backbone, _feature_defaults())
            self.say(f"Backbone {self._backbone.checkpoint} ({self._backbone.architecture}, "
                     f"{self._backbone.label_count} labels)")
        return self._backbone

    @property
    def labels(self) -> List[str]:
        return list(LABELS) + [self.settings.wake_word]

    @property
    def tflite_path(self) -> str:
        return self.path(f"{self.settings.wake_word}.tflite")

    def check_inputs(self) -> None:
        """Bad input as one line before any long stage: the recordings, the folders, the backbone."""
        settings = self.settings
        if settings.recordings:
            data.read_recordings(settings.recordings, data.SAMPLE_RATE, data.SAMPLE_RATE)
        if not os.path.isdir(settings.background_noise_dir) or \
                not audio_io.audio_files(settings.background_noise_dir):
            raise UsageError(f"--background_noise_dir {settings.background_noise_dir} holds no "
                             "audio files")
        data.negative_paths(self.data_dirs, settings.wake_word, settings.validation_percentage,
                            settings.testing_percentage)
        self.backbone  # noqa: B018  (loaded: a bad --backbone is one line now)

    def keep_settings(self) -> None:
        """settings.json: written by the first run, compared by the next ones."""
        path = self.path("settings.json")
        mine = json.loads(json.dumps(dataclasses.asdict(self.settings)))
        if os.path.exists(path):
            with open(path) as handle:
                kept = json.load(handle)
            changed = sorted(name for name in mine if kept.get(name) != mine[name])
            if changed:
                raise UsageError(f"--output_dir {self.output_dir} holds a run with other flags "
                                 f"({', '.join('--' + name for name in changed)}); use the same "
                                 "flags to resume it, or another --output_dir")
        else:
            cli.write_atomically(path, json.dumps(mine, indent=1).encode())

    def stages(self) -> List[tuple]:
        """(name, what marks it done, function) of each stage, in order."""
        return [("near misses", self.path("near_misses.json"), self.find_near_misses),
                ("synthesis", self.path("synthesized.json"), self.synthesize),
                ("examples", self.path("negative_stream.wav"), self.make_examples),
                ("hard negatives", self.path("hard_negatives.npz"), self.mine_hard_negatives),
                ("head", self.path("head", "head.ckpt.index"), self.train_head),
                ("conversion", self.path("detector_no_threshold.tflite"), self.convert),
                ("threshold", self.path("threshold.json"), self.choose_threshold),
                ("detector", self.path(f"{self.settings.wake_word}_report.json"), self.publish)]

    def run(self) -> None:
        self.check_inputs()
        self.keep_settings()
        stages = self.stages()
        for number, (name, done, function) in enumerate(stages, 1):
            if os.path.exists(done):
                self.say(f"[{number}/{len(stages)}] {name}: done ({done})")
                continue
            self.say(f"[{number}/{len(stages)}] {name}")
            function()

    def near_miss_words(self) -> List[str]:
        with open(self.path("near_misses.json")) as handle:
            return [entry["word"] for entry in json.load(handle)]

    def find_near_misses(self) -> None:
        settings = self.settings
        real = list(data.word_folders(self.data_dirs)) + synthesis.SPEECH_COMMANDS_WORDS
        chosen = near_misses.choose(settings.wake_word, real + list(settings.near_miss_words),
                                    settings.near_misses, synthesis_engines.EspeakEngine().phonemes)
        given = [(word, None) for word in settings.near_miss_words if word != settings.wake_word]
        entries = [{"word": word, "phoneme_distance": distance}
                   for word, distance in given + [item for item in chosen if item[0] not in
                                                  settings.near_miss_words]]
        self.say("  " + (", ".join(f"{entry['word']} ({entry['phoneme_distance']})"
                                   for entry in entries) or "none"))
        _write_json(self.path("near_misses.json"), entries)

    def synthesize(self) -> None:
        settings, folder = self.settings, self.path("synthesized")
        summaries = {}
        for words, clips, seed in (([settings.wake_word], settings.synthesized_clips, settings.seed),
                                   (self.near_miss_words(), settings.near_miss_clips, settings.seed + 1)):
            if not words or not clips:
                continue
            summary = synthesis.synthesize(folder, words, clips, seed, None, self.jobs, None,
                                           settings.engine)
            summaries[",".join(words)] = dataclasses.asdict(summary)
            self.say(f"  {', '.join(words)}: {sum(summary.clips_per_word.values())} clips, "
                     f"{len(summary.voices)} voice(s) and {len(summary.variants)} variant(s): "
                     f"{', '.join(summary.voices)}")
        _write_json(self.path("synthesized.json"), summaries)

    def examples(self, rate: int, samples: int) -> "tuple[data.Examples, list, List[str]]":
        """The examples (clips of samples at rate), the noise recordings and the negative
        stream's clips (paths)."""
        settings = self.settings
        negatives, _, stream_paths = self.negative_sources()
        folder = self.path("synthesized")
        synthesized = {word: data.load(audio_io.audio_files(os.path.join(folder, word)), rate, samples)
                       for word in [settings.wake_word] * bool(settings.synthesized_clips)
                       + self.near_miss_words()}
        recordings = (data.read_recordings(settings.recordings, rate, samples)
                      if settings.recordings else np.zeros((0, samples), np.int16))
        near = [clips for word, clips in synthesized.items() if word != settings.wake_word]
        parts = [(synthesized.get(settings.wake_word, recordings[:0]), data.WAKE_WORD_INDEX,
                  data.POSITIVE_COPIES),
                 (recordings, data.WAKE_WORD_INDEX, data.recording_copies(len(recordings))),
                 (data.load(negatives, rate, samples), data.UNKNOWN_INDEX, 1)]
        if near:
            parts.append((np.concatenate(near), data.UNKNOWN_INDEX, data.NEAR_MISS_COPIES))
        noises = audio_io.load_background_noise([settings.background_noise_dir], rate)
        return data.Examples.of(parts, samples), noises, stream_paths


    def make_examples(self) -> None:
        settings, backbone, model = self.settings, self.backbone, _model()
        samples, rate = backbone.settings.desired_samples, backbone.settings.sample_rate
        examples, noises, stream_paths = self.examples(rate, samples)
        self.say(f"  {len(examples)} examples: " + ", ".join(
            f"{self.labels[label]} {count}" for label, count in examples.counts().items()))
        embeddings, labels, representative = model.embed_examples(
            backbone, examples.chunks(noises, rate, settings.seed), REPRESENTATIVE_CLIPS,
            progress(self.say, "embedded", len(examples)))
        _write_npz(self.path("embeddings.npz"), embeddings=embeddings, labels=labels)
        _write_npz(self.path("representative.npz"), clips=representative)
        duration_s = settings.stream_minutes * 60
        words = data.load(data.sample(stream_paths, duration_s // SLOT_S + 1, settings.seed),
                          rate, samples)
        audio = data.negative_stream(words, noises, duration_s, rate, settings.seed)
        cli.write_atomically(self.path("negative_stream.wav"),
                             test_recordings.wav_bytes(audio, rate))
        self.say(f"  negative stream: {settings.stream_minutes} min of {len(words)} clips of "
                 "other words in noise, from speakers the examples do not have")

    def negative_sources(self) -> Tuple[List[str], List[str], List[str]]:
        """The clips of other words of the training partition: (the examples', the mining
        stream's, the negative stream's)."""
        settings = self.settings
        train_paths, stream_paths = data.negative_paths(
            self.data_dirs, settings.wake_word, settings.validation_percentage,
            settings.testing_percentage)
        examples = data.sample(train_paths, settings.negative_clips, settings.seed)
        return examples, data.mining_paths(train_paths, examples), stream_paths

    def mining_stream(self, rate: int, samples: int) -> np.ndarray:
        """The stream hard negatives are mined from: --hard_negative_minutes of the examples'
        speakers' words that are no example, in noise; not the negative stream the threshold
        is chosen on (other speakers, other clips, another seed)."""
        settings = self.settings
        seed = settings.seed + data.MINING_SEED_OFFSET
        duration_s = settings.hard_negative_minutes * 60
        words = data.load(data.sample(self.negative_sources()[1], duration_s // SLOT_S + 1, seed),
                          rate, samples)
        noises = audio_io.load_background_noise([settings.background_noise_dir], rate)
        return data.negative_stream(words, noises, duration_s, rate, seed)

    def mine_hard_negatives(self) -> None:
        """The mining stream's windows, as the detector slides over audio (the default stride of
        test_streaming_accuracy.py), through the backbone."""
        backbone, model = self.backbone, _model()
        rate = backbone.settings.sample_rate
        audio = self.mining_stream(rate, backbone.settings.desired_samples)
        stride = int(round(rate * data.detection_defaults().clip_stride_ms / 1000))
        windows = detection.SlidingWindows(audio, backbone.settings, stride)
        self.say(f"  {self.settings.hard_negative_minutes} min of other words: {len(windows)} "
                 f"windows, one every {stride * 1000 / rate:g} ms")
        embeddings = model.embed_windows(backbone, windows,
                                         progress(self.say, "windows embedded", len(windows)))
        _write_npz(self.path("hard_negatives.npz"), embeddings=embeddings)

    def train_head(self) -> None:
        settings, model = self.settings, _model()
        with np.load(self.path("embeddings.npz")) as saved:
            embeddings, labels = saved["embeddings"], saved["labels"]
        with np.load(self.path("hard_negatives.npz")) as saved:
            inputs, labels, weights = data.training_set(embeddings, labels, saved["embeddings"])
        self.say(f"  {len(embeddings)} examples and {len(inputs) - len(embeddings)} windows of "
                 "the mining stream")
        head = model.head_model(embeddings.shape[1], settings.head_units, settings.seed)
        model.train(head, inputs, labels, weights, settings.steps, settings.batch_size,
                    settings.learning_rate, settings.seed, self.say)
        checkpoints.save_weights_atomically(head, self.path("head", "head.ckpt"))

    def convert(self) -> None:
        settings, backbone, model = self.settings, self.backbone, _model()
        with np.load(self.path("embeddings.npz")) as saved:
            size = saved["embeddings"].shape[1]
        head = model.head_model(size, settings.head_units, settings.seed)
        checkpoints.load_weights(head, self.path("head", "head.ckpt"))
        with np.load(self.path("representative.npz")) as saved:
            clips = saved["clips"]
        content, form = model.convert_detector(model.detector(backbone, head), backbone.settings,
                                               backbone.architecture, self.labels, clips)
        self.say(f"  int8, {form}")
        cli.write_atomically(self.path("detector_no_threshold.tflite"), content)

    def choose_threshold(self) -> None:
        settings, path = self.settings, self.path("detector_no_threshold.tflite")
        with open(path, "rb") as handle:
            rate = data.detector_settings(handle.read())[0].sample_rate
        audio = test_recordings.read_recording(self.path("negative_stream.wav"), rate)
        scores = data.detector_scores(path, audio)
        duration_s = len(audio) / rate
        threshold, false_alarms = data.choose_threshold(
            scores, duration_s, settings.false_alarms_per_hour,
            data.detection_defaults().suppression_ms)
        figures = {"threshold": threshold, "false_alarms": false_alarms,
                   "false_alarms_per_hour": false_alarms * 3600 / duration_s,
                   "target_false_alarms_per_hour": settings.false_alarms_per_hour,
                   "stream_s": duration_s}
        self.say(f"  threshold {threshold:.4f}: {false_alarms} false alarm(s) in "
                 f"{duration_s / 3600:.2f} h of the negative stream")
        _write_json(self.path("threshold.json"), figures)

    def publish(self) -> None:
        with open(self.path("detector_no_threshold.tflite"), "rb") as handle:
            content = handle.read()
        with open(self.path("threshold.json")) as handle:
            threshold = json.load(handle)
        payload = model_metadata.read_metadata(content)
        payload["threshold"] = threshold["threshold"]
        content = model_metadata.add_metadata(content, payload)
        cli.write_atomically(self.tflite_path, content)
        report = tflite_report.analyze(content)
        report.update(tflm_runtime.report_figures(content, self.tflite_path))
        self.say(tflite_report.format_report(report, self.tflite_path))
        report.update(tflm=self.tflm_run(), threshold=threshold,
                      near_misses=self.near_miss_words(), settings=dataclasses.asdict(self.settings))
        self.say(f"  TFLM: {report['tflm']}")
        _write_json(self.path(f"{self.settings.wake_word}_report.json"), report)
        self.say(f"Wrote {self.tflite_path}; measure it with\n  python test_streaming_accuracy.py "
                 f"--tflite_path {self.tflite_path} --wav <recording> --ground_truth <labels>")

    def tflm_run(self) -> str:
        """The .tflite under TFLM on a few calibration clips, next to LiteRT: one line."""
        if not tflm_runtime.available():
            return f"not run: tflite-micro is not installed ({tflm_runtime.INSTALL_HINT})"
        with open(self.tflite_path, "rb") as handle:
            settings, labels = data.detector_settings(handle.read())
        with np.load(self.path("representative.npz")) as saved:
            clips = saved["clips"][:TFLM_CHECK_CLIPS]
        fingerprints = features.Fingerprinter(settings)(clips)
        scores = {}
        for runtime in (tflite_model.LITERT, tflite_model.TFLM):
            model = tflite_model.TFLiteModel(self.tflite_path, runtime=runtime)
            model.check_settings(settings, labels)
            scores[runtime] = model.predict(fingerprints)
        gap = float(np.abs(scores[tflite_model.LITERT] - scores[tflite_model.TFLM]).max())
        return (f"{len(clips)} clips scored, the largest difference from LiteRT's scores "
                f"{gap:.4f}")


def progress(say: Callable[[str], None], what: str, total: int) -> Callable[[int], None]:
    """A counter that says how far it is at every tenth of total (and at the end)."""
    said = [-1]

    def update(done: int) -> None:
        if done * 10 // total > said[0] or done == total:
            said[0] = done * 10 // total
            say(f"  {what} {done}/{total}")
    return update


def _model():
    """wake_word_model, imported at first use: it imports TensorFlow (module docstring)."""
    from kws.wake_word import model as wake_word_model
    return wake_word_model


def _feature_defaults() -> features.ModelSettings:
    """The fingerprint flags' defaults: a --backbone value's fingerprint flags when it gives none."""
    parser = argparse.ArgumentParser()
    features.add_feature_flags(parser)
    return features.settings_from_flags(parser.parse_args([]))


def _write_json(path: str, value) -> None:
    cli.write_atomically(path, (json.dumps(value, indent=1) + "\n").encode())


def _write_npz(path: str, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    cli.write_atomically(path, buffer.getvalue())


def build(settings: Settings, output_dir: str, jobs: int,
          say: Callable[[str], None] = print) -> str:
    """train_wake_word.py's work: every stage not done yet in output_dir, with jobs synthesis
    processes; returns the detector's .tflite path."""
    run = Run(settings, output_dir, jobs, say)
    run.run()
    return run.tflite_path
