"""TensorFlow for the modules that need it: tf-keras selected, its start-up chatter hidden.

configure() is the one place that sets the environment TensorFlow reads when it is
first imported: TF_USE_LEGACY_KERAS=1 selects tf-keras (Keras 2), which TensorFlow
Model Optimization needs, and TF_CPP_MIN_LOG_LEVEL=2 keeps its C++ log lines quiet;
import_tensorflow() calls it first, so importing kws changes nothing until a module
asks for TensorFlow. Modules that a command may import without needing TensorFlow
hold lazy_tensorflow() instead. Nothing under kws/runtime/ imports this module.
"""
import os
import sys

from kws import cli


def configure() -> None:
    """Sets, unless the user has, the environment TensorFlow reads when it is imported."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow():
    """Imports TensorFlow and initializes its devices; returns the module.

    TensorFlow 2.21 prints informational lines to stderr while it loads and
    probes for GPUs, whatever TF_CPP_MIN_LOG_LEVEL says; they are hidden
    (quiet_stderr), so that an error of ours is the only line a user sees.
    """
    configure()
    if "tensorflow" in sys.modules:
        import tensorflow
        return tensorflow
    with cli.quiet_stderr():
        import tensorflow
        tensorflow.config.list_physical_devices()
        if "TF_CONFIG" not in os.environ:  # a multi-worker strategy must start the runtime itself
            tensorflow.constant(0.0).numpy()
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


class _LazyTensorFlow:
    """Stands for the tensorflow module: import_tensorflow() runs at the first attribute read."""

    def __getattr__(self, name: str):
        return getattr(import_tensorflow(), name)


def lazy_tensorflow() -> _LazyTensorFlow:
    """TensorFlow for a module that some commands import without needing it (the deployment
    tools: test_tflite.py, label_wav.py, test_streaming_accuracy.py): it is imported when a
    function first reads an attribute of it. Such a module starts with
    `from __future__ import annotations`, so that annotations do not read it."""
    return _LazyTensorFlow()
