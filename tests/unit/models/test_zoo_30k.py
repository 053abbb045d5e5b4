"""Tests for the kws_streaming 30k model zoo: sizes, forward pass, errors, int8 TFLite."""
from typing import Sequence

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from kws import cli, tf_env
from kws.features import ModelSettings
from kws.models import registry, zoo_30k

tf = tf_env.import_tensorflow()

# Published parameter counts of kws_experiments_30k_12_labels.md, and the DCT
# feature count each model was trained with there.
PUBLISHED = {
    "svdf": (32_000, 40),
    "svdf_resnet": (33_000, 40),
    "tc_resnet": (31_000, 30),
    "mobilenet": (35_000, 40),
    "mobilenet_v2": (28_000, 30),
    "inception": (30_000, 30),
    "inception_resnet": (33_000, 30),
    "xception": (31_000, 30),
}

TINY = {
    "svdf": (3, 3, 4, 8, 6),
    "svdf_resnet": (1, 1, 1, 3, 4, 3, 4, 3, 8, 2, 2, 1, 8),
    "tc_resnet": (3, 4, 8),
    "mobilenet": (4, 3, 2, 3, 2, 8),
    "mobilenet_v2": (4, 3, 2, 3, 1, 4, 150),
    "inception": (4, 5, 2, 2, 4, 3, 1),
    "inception_resnet": (4, 5, 2, 50, 2, 2, 4, 3, 1),
    "xception": (1, 1, 1, 5, 4, 3, 4, 3, 6, 3, 8, 2, 2, 1, 1, 8),
}

BAD = [
    ("svdf", (4, 10, 16)),
    ("svdf", (4, 0, 16, 32, 40)),
    ("svdf", (30, 30, 16, 16, 8)),
    ("svdf_resnet", (1, 1, 2, 7, 32, 7, 50, 11, 50, 2, 2, 1, 64)),
    ("tc_resnet", (3,)),
    ("mobilenet", (32, 3, 2, 3, 2)),
    ("mobilenet", (32, 60, 1)),
    ("mobilenet_v2", (32, 3, 2, 3, 1, 32, 1.5)),
    ("inception", (32, 5, 1, 16, 32, 3, -2)),
    ("inception_resnet", (32, 5, 1, 20, 16, 16, 32, 3)),
    ("xception", (2, 1, 1, 5, 16, 5, 32, 7, 40, 7, 64, 2, 2, 1, 1, 64)),
    ("xception", ()),
]


def settings(dct_coefficient_count: int = 40) -> ModelSettings:
    """16 kHz, 1 s clips, 40 ms windows every 20 ms: 49 frames."""
    return ModelSettings(sample_rate=16000, clip_duration_ms=1000, window_size_ms=40,
                         window_stride_ms=20, dct_coefficient_count=dct_coefficient_count)


def build(name: str, model_size_info: Sequence[int],
          dct_coefficient_count: int = 40) -> tf.keras.Model:
    """Builds a registered architecture for 49 frames of dct_coefficient_count features and
    12 labels."""
    return registry.create_model(settings(dct_coefficient_count), name, model_size_info,
                                 label_count=12)


def test_registry_covers_the_zoo():
    assert set(PUBLISHED) <= set(registry.MODELS)
    for name in PUBLISHED:
        architecture = registry.MODELS[name]
        assert callable(architecture.builder) and architecture.layout
        assert all(isinstance(value, int) and value > 0 for value in architecture.default_size_info)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_default_size_matches_published_count(name):
    published, _ = PUBLISHED[name]
    model = build(name, registry.MODELS[name].default_size_info)
    assert model.input_shape == (None, 49 * 40)
    assert model.output_shape == (None, 12)
    assert abs(model.count_params() - published) <= 0.1 * published


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_trainable_count_at_published_features_rounds_to_published(name):
    published, dct_coefficient_count = PUBLISHED[name]
    model = build(name, registry.MODELS[name].default_size_info, dct_coefficient_count)
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert published <= trainable < published + 1000


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_model_forward_pass(name):
    model = build(name, TINY[name])
    fingerprints = np.random.default_rng(0).normal(size=(3, 49 * 40)).astype(np.float32)
    output = model(fingerprints, training=False).numpy()
    assert output.shape == (3, 12)
    np.testing.assert_allclose(output.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name,model_size_info", BAD)
def test_bad_size_list_raises_usage_error(name, model_size_info):
    with pytest.raises(cli.UsageError, match=name) as error:
        build(name, model_size_info)
    assert "\n" not in str(error.value)


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_model_runs_as_int8_tflite(name):
    model = build(name, TINY[name])
    rng = np.random.default_rng(1)

    def representative_dataset():
        for _ in range(2):
            yield [rng.normal(size=(1, 49 * 40)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    assert input_details["dtype"] == np.float32 and output_details["dtype"] == np.float32
    assert any(tensor["dtype"] == np.int8 for tensor in interpreter.get_tensor_details())

    fingerprint = rng.normal(size=(1, 49 * 40)).astype(np.float32)
    interpreter.set_tensor(input_details["index"], fingerprint)
    interpreter.invoke()
    output = interpreter.get_tensor(output_details["index"])
    assert output.shape == (1, 12)
    np.testing.assert_allclose(output, model(fingerprint).numpy(), atol=0.05)


def test_each_layout_length_accepts_the_size_info_it_describes():
    assert zoo_30k.tc_resnet_length((3, 32, 36, 36, 40)) == 5
    assert zoo_30k.mobilenet_v2_length((1, 2, 3, 4, 5)) == 7  # 3 first, then blocks of 4
    for architecture, info in TINY.items():
        length = getattr(zoo_30k, f"{architecture}_length")(info)
        assert length == len(info), architecture
