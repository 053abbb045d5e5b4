"""kws.tf_env: importing kws changes nothing; TensorFlow comes with tf-keras selected."""
import json
import subprocess
import sys

from conftest import ROOT

SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import kws.cli, kws.features, kws.runtime.tflite_model
before = {name: os.environ.get(name) for name in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}
loaded = "tensorflow" in sys.modules
from kws import tf_env
tf = tf_env.import_tensorflow()
print(json.dumps({"before": before, "loaded": loaded,
                  "after": os.environ.get("TF_USE_LEGACY_KERAS"),
                  "keras_2": tf.keras.layers.Dense.__module__.split(".")[0] == "tf_keras"}))
"""


def test_importing_kws_sets_nothing_and_tensorflow_gets_tf_keras():
    env = {key: value for key, value in __import__("os").environ.items()
           if key not in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"before": {"TF_USE_LEGACY_KERAS": None, "TF_CPP_MIN_LOG_LEVEL": None},
                      "loaded": False, "after": "1", "keras_2": True}
