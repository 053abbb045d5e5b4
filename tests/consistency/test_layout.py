"""The layout: thin scripts and two faces at the root over one package, kws/; no script
imported by anything, nothing under kws/ importing a root file, no cycles, small modules,
no TensorFlow under kws/runtime/, flags turned into typed settings at the scripts' door, and
each script's --help showing only the flags it reads."""
import ast
import importlib

import pytest

from conftest import ROOT, load_script

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
              "--exclude_words", "--held_out_speaker_percentage"}
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
                           "--stream_minutes", "--hard_negative_minutes", "--engine",
                           "--synthesized_clips", "--near_misses", "--near_miss_clips",
                           "--near_miss_words", "--jobs", "--head_units", "--steps",
                           "--batch_size", "--learning_rate", "--seed"},
    "test_streaming_accuracy.py": SCORER_FLAGS | DETECTION_FLAGS |
    {"--wav", "--ground_truth", "--time_tolerance_ms", "--sweep_thresholds", "--output_json",
     "--plot_dir"},
}


FLAG_PARAMETERS = {"args", "flags"}  # names that hold flags when they carry no annotation

FACES = ("models.py", "input_data.py")
MAX_FACE_LINES = 40
TENSORFLOW = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"}
TENSORFLOW_DOORS = {"import_tensorflow", "lazy_tensorflow"}


def library_modules():
    """Every module of the kws package, by dotted name."""
    return {".".join(path.relative_to(ROOT).with_suffix("").parts).replace(".__init__", ""): path
            for path in sorted((ROOT / "kws").rglob("*.py"))}


def root_files():
    return sorted(ROOT.glob("*.py"))


def imported_names(path):
    """Every module name a file imports, anywhere in it: 'a.b' for `import a.b`, and for
    `from a import b` both 'a' and 'a.b' (b may be a module or a name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def library_imports(path):
    """The kws modules a file imports."""
    return imported_names(path) & set(library_modules())


def root_imports(path):
    """The root files (scripts and faces) a file imports."""
    return {name.split(".")[0] for name in imported_names(path)} & {p.stem for p in root_files()}


def test_nothing_imports_a_script():
    scripts = {name[:-3] for name in SCRIPTS}
    files = [*library_modules().values(), *root_files(), *sorted((ROOT / "bench").glob("*.py"))]
    offenders = {str(path.relative_to(ROOT)): sorted(root_imports(path) & scripts) for path in files}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_library_imports_no_root_file():
    offenders = {name: sorted(root_imports(path)) for name, path in library_modules().items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_library_modules_import_no_cycle():
    modules = library_modules()
    library = {name: library_imports(path) - {name} for name, path in modules.items()}
    visiting, done = set(), set()

    def visit(module, trail):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(trail + [module])
        visiting.add(module)
        for imported in sorted(library.get(module, ())):
            if modules[imported].name != "__init__.py":
                visit(imported, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(library):
        visit(module, [])


def test_scripts_faces_and_modules_are_small():
    limits = {path.name: MAX_FACE_LINES if path.name in FACES else MAX_SCRIPT_LINES
              for path in root_files()}
    sizes = {path.name: len(path.read_text().splitlines()) for path in root_files()}
    sizes.update({name: len(path.read_text().splitlines())
                  for name, path in library_modules().items()})
    assert {name: size for name, size in sizes.items()
            if size > limits.get(name, MAX_LIBRARY_LINES)} == {}


def test_every_root_file_is_a_script_or_a_face():
    assert sorted(path.name for path in root_files()) == sorted(SCRIPTS + FACES)


@pytest.mark.parametrize("face", FACES)
def test_a_face_only_lists_names_of_the_library_and_each_resolves(face):
    tree = ast.parse((ROOT / face).read_text())
    kinds = {type(node).__name__ for node in tree.body[1:]}
    assert kinds <= {"ImportFrom", "Assign"}, kinds
    module = importlib.import_module(face[:-3])
    assert module.__all__ and all(getattr(module, name, None) is not None
                                  for name in module.__all__)


def closure(names):
    """The kws modules that names import, transitively (a package's __init__ included)."""
    modules, seen, todo = library_modules(), set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules)
        todo.extend(library_imports(modules[name]))
    return seen


def reaches_tensorflow(path):
    """Whether a file imports TensorFlow (or tf-keras, Keras, TFMOT) or asks kws.tf_env for it."""
    tree = ast.parse(path.read_text())
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return bool({name.split(".")[0] for name in imported_names(path)} & TENSORFLOW or
                calls & TENSORFLOW_DOORS or "kws.tf_env" in imported_names(path))


def test_the_runtime_and_what_it_imports_never_import_tensorflow():
    runtime = [name for name in library_modules() if name.startswith("kws.runtime")]
    assert len(runtime) >= 5
    modules = library_modules()
    assert sorted(name for name in closure(runtime) if reaches_tensorflow(modules[name])) == []


def test_the_tensorflow_check_sees_tensorflow():
    modules = library_modules()
    assert reaches_tensorflow(modules["kws.training.trainer"])
    assert reaches_tensorflow(modules["kws.graph_features"])
    assert not reaches_tensorflow(modules["kws.features"])
    assert "kws.features" in closure(["kws.runtime.tflite_model"])


def test_bench_calls_no_private_name_of_the_library():
    offenders = {}
    for path in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(path.read_text())
        private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                          and node.attr.startswith("_") and not node.attr.startswith("__")
                          and not (isinstance(node.value, ast.Name) and node.value.id == "self")})
        if private:
            offenders[path.name] = private
    assert offenders == {}


def is_conversion_point(name, path):
    """Where flags may become typed settings: from_flags, *_from_flags, add_*flags, kws/cli.py."""
    return (name == "from_flags" or name.endswith("_from_flags") or
            (name.startswith("add_") and name.endswith("flags")) or path == "kws/cli.py")


def takes_flags(parameter, starred=False):
    """Whether a parameter is annotated argparse.Namespace, or unannotated and named like flags
    (a starred one, *args, is not: it holds positional arguments)."""
    if parameter.annotation is None:
        return not starred and parameter.arg in FLAG_PARAMETERS
    return "Namespace" in ast.unparse(parameter.annotation)


def flag_parameters(source, path):
    """'path:line function(parameter)' of each function of source that takes flags and is not
    a conversion point."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or \
                is_conversion_point(node.name, path):
            continue
        arguments = node.args
        named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        starred = [parameter for parameter in (arguments.vararg, arguments.kwarg) if parameter]
        found.extend(f"{path}:{node.lineno} {node.name}({parameter.arg})"
                     for parameter in named + starred
                     if takes_flags(parameter, starred=parameter in starred))
    return found


def test_the_library_takes_typed_settings_not_flags():
    offenders = []
    for path in sorted((ROOT / "kws").rglob("*.py")):
        offenders.extend(flag_parameters(path.read_text(), path.relative_to(ROOT).as_posix()))
    assert offenders == []


def test_the_flags_check_sees_a_function_that_takes_flags():
    source = ("import argparse\n"
              "def run(model, args): ...\n"
              "def train(settings: Settings, options: 'argparse.Namespace'): ...\n"
              "def typed(settings: Settings, flags: int): ...\n"
              "def settings_from_flags(args: argparse.Namespace): ...\n"
              "def add_model_flags(parser: argparse.ArgumentParser, flags): ...\n"
              "class Settings:\n"
              "    @classmethod\n"
              "    def from_flags(cls, args): ...\n"
              "    def check(self, *, flags: Optional[argparse.Namespace] = None): ...\n"
              "def forward(*args, **flags): ...\n")
    assert flag_parameters(source, "kws/x.py") == [
        "kws/x.py:2 run(args)", "kws/x.py:3 train(options)", "kws/x.py:10 check(flags)"]
    assert flag_parameters(source, "kws/cli.py") == []


def help_flags(script):
    """The flags that `script --help` lists."""
    parser = load_script(script[:-3]).build_parser()
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--")} - {"--help"}


@pytest.mark.parametrize("script", sorted(EXPECTED_FLAGS))
def test_help_shows_only_the_flags_the_script_reads(script):
    assert help_flags(script) == EXPECTED_FLAGS[script]
