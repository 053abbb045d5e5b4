"""The layout: thin scripts over a library, no script imported by anything, no cycles,
small modules, and each script's --help showing only the flags it reads."""
import ast
import importlib

import pytest

from conftest import ROOT

SCRIPTS = ("train.py", "test.py", "optimize.py", "convert.py", "test_tflite.py", "label_wav.py",
           "synthesize_dataset.py", "quickstart.py", "generate_streaming_test_wav.py",
           "test_streaming_accuracy.py", "prepare_data.py", "train_wake_word.py")
MAX_SCRIPT_LINES = 150
MAX_LIBRARY_LINES = 500

# Flags of one concern, and the scripts that read them.
DATA_FLAGS = {"--data_url", "--data_dir", "--background_noise_dir", "--audio_cache_dir",
              "--test_dir", "--validation_percentage", "--testing_percentage",
              "--silence_percentage", "--unknown_percentage", "--extra_unknown_dirs",
              "--validation_dir", "--seed", "--evaluation_partitions", "--unknown_draw",
              "--exclude_words"}
AUDIO_AUGMENTATION_FLAGS = {"--time_shift_ms", "--background_frequency", "--background_volume",
                            "--background_snr_db", "--resample", "--reverb_probability", "--eq_db",
                            "--gain_db"}
MASK_FLAGS = {"--time_masks", "--time_mask_max", "--frequency_masks", "--frequency_mask_max",
              "--augmentation_domain"}
FEATURE_FLAGS = {"--sample_rate", "--clip_duration_ms", "--window_size_ms", "--window_stride_ms",
                 "--dct_coefficient_count", "--feature_bin_count", "--preprocess"}
MODEL_FLAGS = {"--model_architecture", "--model_size_info"}
TRAINING_FLAGS = {"--how_many_training_steps", "--learning_rate", "--batch_size",
                  "--eval_step_interval", "--train_dir", "--summaries_dir", "--start_checkpoint"}
DEVICE_FLAGS = {"--distribution_strategy", "--mixed_precision", "--fingerprints_on"}
CALIBRATION_FLAGS = {"--representative_samples", "--representative_dir", "--input_clip_percentile"}
CONVERSION_FLAGS = {"--quantize", "--no-quantize", "--quantize_mode", "--inference_type",
                    "--output_file", "--report_json", "--c_array"}
OPTIMIZATION_FLAGS = {"--technique", "--number_of_clusters", "--cluster_centroids_init",
                      "--initial_sparsity", "--final_sparsity", "--pruning_begin_step",
                      "--pruning_end_step", "--pruning_frequency"}
DETECTION_FLAGS = {"--clip_stride_ms", "--average_window_ms", "--detection_threshold",
                   "--suppression_ms"}
SCORER_FLAGS = {"--wanted_words"} | FEATURE_FLAGS | MODEL_FLAGS | \
    {"--checkpoint", "--tflite_path", "--batch_size", "--runtime", "--labels", "--force_flags"}
EXPECTED_FLAGS = {
    "train.py": DATA_FLAGS | {"--wanted_words"} | FEATURE_FLAGS | AUDIO_AUGMENTATION_FLAGS |
    MASK_FLAGS | MODEL_FLAGS | TRAINING_FLAGS | DEVICE_FLAGS | {"--shards_dir", "--plot_dir"} |
    {"--teacher", "--distillation_weight", "--distillation_temperature"},
    "prepare_data.py": DATA_FLAGS - {"--test_dir", "--validation_dir", "--audio_cache_dir"} |
    {"--wanted_words"} | FEATURE_FLAGS |
    {"--shards_dir", "--clips_per_shard"},
    "test.py": DATA_FLAGS | {"--wanted_words"} | FEATURE_FLAGS | MODEL_FLAGS |
    {"--checkpoint", "--output_json", "--plot_dir"},
    "test_tflite.py": DATA_FLAGS | {"--wanted_words"} | FEATURE_FLAGS |
    {"--tflite_path", "--batch_size", "--runtime", "--force_flags", "--output_json", "--plot_dir"},
    "convert.py": DATA_FLAGS | {"--wanted_words"} | FEATURE_FLAGS | AUDIO_AUGMENTATION_FLAGS |
    MODEL_FLAGS | CALIBRATION_FLAGS | CONVERSION_FLAGS | {"--checkpoint", "--streaming",
                                                          "--include_features"},
    "optimize.py": DATA_FLAGS | {"--wanted_words"} | FEATURE_FLAGS | AUDIO_AUGMENTATION_FLAGS |
    MASK_FLAGS | MODEL_FLAGS | TRAINING_FLAGS | CALIBRATION_FLAGS | OPTIMIZATION_FLAGS |
    {"--checkpoint", "--distribution_strategy"},
    "label_wav.py": SCORER_FLAGS | DETECTION_FLAGS | {"--how_many_labels", "--wav"},
    "generate_streaming_test_wav.py": {"--test_dir", "--data_dir", "--partition",
                                       "--validation_percentage", "--testing_percentage",
                                       "--wanted_words", "--background_noise_dir", "--sample_rate",
                                       "--clip_duration_ms", "--duration_s", "--word_gap_ms",
                                       "--unknown_percentage", "--background_volume",
                                       "--word_gain_db", "--seed", "--output_wav",
                                       "--output_ground_truth"},
    "train_wake_word.py": {"--wake_word", "--output_dir", "--recordings", "--backbone",
                           "--false_alarms_per_hour", "--data_dir", "--background_noise_dir",
                           "--validation_percentage", "--testing_percentage", "--negative_clips",
                           "--stream_minutes", "--engine", "--synthesized_clips", "--near_misses",
                           "--near_miss_clips", "--near_miss_words", "--jobs", "--head_units",
                           "--steps", "--batch_size", "--learning_rate", "--seed"},
    "test_streaming_accuracy.py": SCORER_FLAGS | DETECTION_FLAGS |
    {"--wav", "--ground_truth", "--time_tolerance_ms", "--sweep_thresholds", "--output_json",
     "--plot_dir"},
}


def top_level_modules():
    return sorted(path for path in ROOT.glob("*.py"))


def local_imports(path):
    """The repository modules that a module imports, anywhere in it."""
    local = {module.stem for module in top_level_modules()}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & local


def test_no_module_imports_a_script():
    scripts = {name[:-3] for name in SCRIPTS}
    offenders = {path.name: sorted(local_imports(path) & scripts) for path in top_level_modules()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_library_modules_import_no_cycle():
    library = {path.stem: local_imports(path) for path in top_level_modules()
               if path.name not in SCRIPTS}
    visiting, done = set(), set()

    def visit(module, trail):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(trail + [module])
        visiting.add(module)
        for imported in sorted(library.get(module, ())):
            visit(imported, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(library):
        visit(module, [])


def test_scripts_are_thin_and_modules_small():
    sizes = {path.name: len(path.read_text().splitlines()) for path in top_level_modules()}
    assert {name: size for name, size in sizes.items()
            if size > (MAX_SCRIPT_LINES if name in SCRIPTS else MAX_LIBRARY_LINES)} == {}


def help_flags(script):
    """The flags that `script --help` lists."""
    parser = importlib.import_module(script[:-3]).build_parser()
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--")} - {"--help"}


@pytest.mark.parametrize("script", sorted(EXPECTED_FLAGS))
def test_help_shows_only_the_flags_the_script_reads(script):
    assert help_flags(script) == EXPECTED_FLAGS[script]
