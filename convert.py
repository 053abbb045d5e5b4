"""Converts a checkpoint to a TensorFlow Lite model for microcontrollers.

    python convert.py --model_architecture dnn --model_size_info 128 128 128 \\
        --checkpoint <ckpt> [--inference_type int8]

Modes:
  (default)                  post-training full-integer quantization: int8 weights
                             and activations, float32 input and output
                             -> <architecture>_quantized.tflite
  --inference_type int8      the same, with int8 input and output (uint8: uint8)
  --inference_type int16     16-bit activations, 8-bit weights (int16x8), int16
                             input and output -> <architecture>_quantized_int16x8.tflite
  --quantize_mode dynamic_range / float16
                             weights only (int8 or float16), float activations
  --no-quantize              float32 -> <architecture>.tflite
  --include_features [int16|float32]   (not with int16x8 or dynamic_range) one clip of
                             audio in, the fingerprint inside (kws/export/raw_audio.py) -> <arch>_audio...

Full-integer quantization calibrates the activation ranges on a representative
data set: --representative_samples clips of the training partition of
--data_dir, augmented as train.py augments them (time shift, background noise),
or the clips of --representative_dir when asked. The evaluation folder
(--test_dir) is never used for this unless named as --representative_dir.
Two adjustments keep int8 accuracy within half a point of the float model on
Arm's DS_CNN, CNN and DNN checkpoints, and close to it on Basic_LSTM (measured
on the dev folder of Speech Commands' test set; see BENCHMARKS.md):
- the calibration fingerprints are clipped below at the --input_clip_percentile
  percentile of their values above the log-mel floor of digital silence (zero
  padding), which lies far below anything a microphone hears: covering it
  would make the int8 input step about three times coarser (that alone cost
  0.4 to 1.9 points on Arm's DS_CNN, CNN and DNN);
- the ranges of tensors read by TANH and LOGISTIC (the gates and cell state of
  unrolled LSTM/GRU cells) stop at +-4 and +-8, where the int8 outputs
  saturate, and the products and sums computed from them are narrowed to
  match (Basic_LSTM_S: -1.35 points without, -0.37 to -0.69 with, depending on
  the calibration clips; with --inference_type int16 it loses 0.15).

Afterwards the new model runs on the test partition (or --test_dir) next to
the float Keras model, and a deployment report (size, gzip size, parameters,
multiply-accumulates, peak activation memory, ops) is printed; --report_json
saves it, --c_array also writes the model as a C source/header pair for TFLite
Micro. Every .tflite carries its labels and settings as metadata (kws/runtime/metadata.py).
"""
import argparse
import os
import time

from kws import cli, evaluation, features, vocabulary
from kws.cli import UsageError
from kws.data import augmentation, speech_commands
from kws.export import calibration, conversion, quantization, raw_audio, stateful_model
from kws.models import registry
from kws.runtime import metadata as model_metadata
from kws.runtime import report as tflite_report
from kws.runtime import tflm
from kws.training import checkpoints


def main(args: argparse.Namespace) -> None:
    mode = quantization.mode_from_flags(args)
    if args.include_features:
        raw_audio.check_mode(mode)
    if args.quantize:
        calibration.check_input_clip_percentile(args.input_clip_percentile)
    if args.test_dir and not os.path.isdir(args.test_dir):
        raise UsageError(f"--test_dir {args.test_dir} is not a folder")
    model_settings = features.settings_from_flags(args)
    labels = vocabulary.words_list_from_flags(args)
    model = registry.create_model(model_settings, args.model_architecture, args.model_size_info,
                                  label_count=len(labels))
    prefix = checkpoints.load_weights(model, args.checkpoint)
    print(f"Loaded {prefix}")
    stream = stateful_model.from_flags(args, model, model_settings)
    name = args.model_architecture + "_streaming" * args.streaming
    output_file = args.output_file or quantization.default_output_file(
        name + ("_audio" if args.include_features else ""), mode)
    data = speech_commands.DataSource.from_flags(args, model_settings)
    clips, source = None, None
    if mode.calibrated:
        clips, source = calibration.representative_clips(
            calibration.CalibrationSettings.from_flags(args), data)
        print(f"Calibrating on {source}")
    audio = f", {args.include_features} audio input" if args.include_features else ""
    print(f"Converting to {mode.description}{audio}")
    start = time.perf_counter()
    content, check_inputs = conversion.convert(model, model_settings, mode, clips,
                                               args.input_clip_percentile, stream,
                                               args.include_features)
    content = model_metadata.add_metadata(content, model_metadata.describe(
        model_settings, labels, args.include_features, stream))
    tflite = quantization.check_runs(content, check_inputs, mode)
    cli.write_atomically(output_file, content)
    print(f"Wrote {output_file} ({len(content):,} bytes) in {time.perf_counter() - start:.1f} s")
    if args.c_array:
        print("Wrote {} and {}".format(*tflite_report.write_c_array(output_file, content)))
    report = tflite_report.analyze(content)
    report.update(tflm.report_figures(content, output_file))
    print(tflite_report.format_report(report, output_file))
    figures = {"tflite_path": output_file, "mode": mode.quantization,
               "inference_type": mode.inference_type, "include_features": args.include_features,
               "architecture": args.model_architecture,
               "model_size_info": list(args.model_size_info or
                                       registry.MODELS[args.model_architecture].default_size_info),
               "checkpoint": prefix, "calibration": source,
               "input_clip_percentile": args.input_clip_percentile if source else None,
               "report": report, "keras": registry.model_figures(model),
               "accuracy": evaluation.compare_accuracy(
                   data, model, tflite, os.path.basename(output_file), labels)}
    if args.report_json:
        evaluation.write_json(args.report_json, figures)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__.splitlines()[0])
    speech_commands.add_data_flags(parser)
    vocabulary.add_label_flags(parser)
    features.add_feature_flags(parser)
    augmentation.add_augmentation_flags(parser, fingerprint_masks=False)
    registry.add_model_flags(parser)
    group = parser.add_argument_group("conversion")
    checkpoints.add_checkpoint_flag(group, "Checkpoint to convert")
    quantization.add_quantization_flags(group)
    group.add_argument("--output_file", default=None,
                       help="Where to write the .tflite (default: <architecture>_quantized.tflite, "
                            "<architecture>.tflite with --no-quantize, ... in the current folder).")
    calibration.add_calibration_flags(group)
    raw_audio.add_include_features_flag(group)
    stateful_model.add_streaming_flag(group)
    group.add_argument("--report_json", default=None,
                       help="Also write the deployment report and accuracies to this JSON file.")
    group.add_argument("--c_array", action="store_true",
                       help="Also write the model as a C array (<output>.cc and <output>.h) for "
                            "TensorFlow Lite Micro.")
    return parser


if __name__ == "__main__":
    cli.run(main, build_parser())
