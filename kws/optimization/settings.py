"""optimize.py's flags as typed settings, built once at the script's door.

Settings.from_flags checks the flags (UsageError, before anything is loaded)
and groups them by concern: the model and the checkpoint it starts from
(ModelSpec), the technique and its parameters (stages.Technique), the schedule
every stage fine-tunes with (FineTuning) and what the run writes (Output). The
data flags stay with the data source the script builds from them
(speech_commands.DataSource).
"""
import argparse
import dataclasses
import os
from typing import Optional, Tuple

from kws import cli, features, tf_env, vocabulary
from kws.export import calibration
from kws.models import registry
from kws.optimization.stages import Technique
from kws.training import trainer as training

tf = tf_env.import_tensorflow()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model of the flags: its architecture, its size, the settings it is built for and
    its label count."""

    architecture: str
    size_info: Optional[Tuple[int, ...]]  # None: the architecture's default size
    model_settings: features.ModelSettings
    label_count: int

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "ModelSpec":
        size_info = None if args.model_size_info is None else tuple(args.model_size_info)
        return cls(args.model_architecture, size_info, features.settings_from_flags(args),
                   len(vocabulary.words_list_from_flags(args)))

    def build(self) -> tf.keras.Model:
        """A freshly built plain model."""
        return registry.create_model(self.model_settings, self.architecture, self.size_info,
                                     label_count=self.label_count)


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """The schedule every stage fine-tunes with: the steps and learning rate of each phase, the
    batch size, how often it validates and saves, and the seed."""

    steps: Tuple[int, ...]
    learning_rates: Tuple[float, ...]
    batch_size: int
    eval_step_interval: int
    seed: int

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "FineTuning":
        return cls(tuple(args.how_many_training_steps), tuple(args.learning_rate), args.batch_size,
                   args.eval_step_interval, args.seed)


@dataclasses.dataclass(frozen=True)
class Output:
    """What the run writes: the result and the stages' training state under train_dir, the
    TensorBoard logs under summaries_dir ('' for none)."""

    train_dir: str
    summaries_dir: str

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Output":
        return cls(args.train_dir, args.summaries_dir)

    def of_stage(self, folder: str) -> "Output":
        """The folders of a stage, folder being its path of stage folders (prune/cluster/qat)."""
        summaries = os.path.join(self.summaries_dir, folder) if self.summaries_dir else ""
        return Output(os.path.join(self.train_dir, folder), summaries)


@dataclasses.dataclass(frozen=True)
class Settings:
    """optimize.py's flags but the data flags: the model and the checkpoint it starts from,
    the technique, the fine-tuning and what the run writes."""

    model: ModelSpec
    checkpoint: str
    technique: Technique
    fine_tuning: FineTuning
    output: Output

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> "Settings":
        """Checks the flags (UsageError, before anything is loaded) and groups them."""
        training.check_schedule(args.how_many_training_steps, args.learning_rate)
        check_one_device(args.distribution_strategy)
        calibration.check_input_clip_percentile(args.input_clip_percentile)
        technique = Technique.from_flags(args)
        technique.check()
        return cls(ModelSpec.from_flags(args), args.checkpoint, technique,
                   FineTuning.from_flags(args), Output.from_flags(args))


def check_one_device(strategy: Optional[str]) -> None:
    """UsageError for a --distribution_strategy other than none."""
    if strategy not in (None, "none"):
        raise cli.UsageError(f"--distribution_strategy {strategy}: optimize.py fine-tunes "
                             f"on one device only (its TF Model Optimization wrappers are not run under "
                             f"tf.distribute); train.py trains distributed")
