"""kws.runtime.tensors: float values to a tensor's type and back, as TFLite's kernels do;
kws.runtime.stateful_runner: which models are streaming models."""
import numpy as np

from kws.runtime import stateful_runner, tensors

INT8 = {"dtype": np.int8, "quantization": (0.5, -3)}


def test_quantize_rounds_half_away_from_zero_with_scale_and_zero_point():
    values = np.array([0.25, -0.25, 0.75, -0.75, 1.0], np.float32)
    assert tensors.quantize(values, INT8).tolist() == [-2, -4, -1, -5, -1]


def test_quantize_clips_to_the_type_and_dequantize_inverts_on_the_grid():
    assert tensors.quantize(np.array([1000.0, -1000.0]), INT8).tolist() == [127, -128]
    grid = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(tensors.quantize(tensors.dequantize(grid, INT8), INT8), grid)


def test_float_tensors_and_int16_audio_pass_through_unscaled():
    values = np.array([0.1, -2.5], np.float64)
    assert tensors.quantize(values, {"dtype": np.float32, "quantization": (0.0, 0)}).dtype == np.float32
    audio = {"dtype": np.int16, "quantization": (0.0, 0)}
    assert tensors.quantize(np.array([3.0, 40000.0]), audio).tolist() == [3, 32767]
    assert tensors.dequantize(np.array([3], np.int16), audio).tolist() == [3.0]


def test_a_streaming_model_is_named_by_its_first_input_and_has_states():
    assert stateful_runner.is_streaming([{"name": "serving_frames_clip49:0"}, {"name": "state_0"}])
    assert not stateful_runner.is_streaming([{"name": "serving_frames_clip49:0"}])
    assert not stateful_runner.is_streaming([{"name": "fingerprint"}, {"name": "state_0"}])
