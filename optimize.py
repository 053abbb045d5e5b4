"""Optimizes a trained model with TensorFlow Model Optimization: clustering, pruning, QAT.

    python optimize.py --model_architecture dnn --model_size_info 128 128 128 --checkpoint <ckpt>

--technique picks what is done (default cluster, as in Arm's optimize.py):

  cluster            weight clustering: --number_of_clusters values per kernel
  prune              magnitude pruning, polynomial decay from --initial_sparsity to --final_sparsity
  prune_2by4         structured 2:4 sparsity (two zeros in every four input-channel weights)
  qat                quantization-aware training
  prune_cluster      pruning, then sparsity-preserving clustering
  prune_qat          pruning, then pruning-preserving QAT (PQAT)
  cluster_qat        clustering, then cluster-preserving QAT (CQAT)
  prune_cluster_qat  pruning, clustering, then sparsity- and cluster-preserving QAT (PCQAT)

Each stage wraps the layers it can in a freshly built model holding the previous
stage's weights, fine-tunes it with the training flags on --data_dir (a short
schedule by default) and strips the wrappers again. It keeps its state as
train.py does, in a folder named by the stages so far (--train_dir/prune,
--train_dir/prune/cluster, ...): a restarted run continues where it stopped,
and a technique reuses the finished stages it begins with (prune_cluster_qat
after prune_cluster trains only its QAT stage). Before any training, the plan
says which layers each stage wraps and which it leaves alone, and why (tfmot
neither prunes nor clusters depthwise kernels, has no QAT for recurrent
layers, and knows no custom recurrent cell); a technique that would leave
most of a model's kernel weights untouched is refused.

The result, --train_dir/<technique>_<validation accuracy>.ckpt, is a plain
checkpoint: test.py and convert.py load it with the same architecture flags.
Its test accuracy is printed next to the starting checkpoint's, with the
sparsity and the number of distinct values of every kernel (for all of it,
and the most in one output channel: tfmot's cluster-preserving QAT gives a
convolution one set of centroids per output channel when every channel uses
about as many clusters, which keeps the count per channel, as per-channel
int8 quantization does anyway).

Quantization-aware training starts from the ranges post-training quantization
would measure: its activation ranges are set by one pass over the clips
convert.py calibrates with (the --representative_samples and
--input_clip_percentile flags are convert.py's), and its input is clipped
where convert.py clips it. After it, the stripped checkpoint holds the trained
float weights (sparsity and clusters kept), which convert.py quantizes again,
measuring activation ranges anew; the model learned on clipped input, so use
it through convert.py (run with the same data flags), not as a float model.
That is close to what QAT trained but not the same: tfmot's 8-bit QAT clips
activations to the ranges it learns and does not fold batch norm into the
weights it quantizes. So optimize.py also writes
<technique>_<validation accuracy>.tflite, the int8 model converted from the
quantization-aware model itself, and prints its accuracy. BENCHMARKS.md
compares both with post-training quantization of the starting checkpoint on
the same clips.
"""
import argparse

from kws import cli
from kws.data import speech_commands
from kws.optimization import report
from kws.optimization import run as optimization
from kws.optimization.settings import Settings


def main(args: argparse.Namespace) -> None:
    settings = Settings.from_flags(args)
    data = speech_commands.DataSource.from_flags(args, settings.model.model_settings)
    outcome = optimization.optimize(settings, data)
    print(f"\nSaved {outcome.prefix} (validation accuracy {outcome.accuracy:.4f}); load it with the same "
          f"--model_architecture and --model_size_info")
    print(report.format_kernel_stats(outcome.stats))
    for line in outcome.checks:
        print(line)
    if outcome.int8_path:
        print(f"Wrote {outcome.int8_path} ({len(outcome.int8_content):,} bytes), converted from the "
              f"quantization-aware model")
    for line in optimization.accuracy_lines(outcome, settings.technique.name):
        print(line)
    if outcome.int8_path:
        print(f"Post-training quantization of the stripped checkpoint, as convert.py does it: "
              f"convert.py --checkpoint {outcome.prefix} with the same architecture flags")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    optimization.add_flags(parser)
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
