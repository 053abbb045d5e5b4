"""A quantized tensor's values: float in, the tensor's type out, and back, with the tensor's own
scale and zero point (an interpreter's tensor details), as TFLite's kernels compute them."""
import numpy as np


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float values as the tensor of detail takes them: unchanged for a float tensor, else
    rounded as TFLite's QUANTIZE kernel rounds (half away from zero, in float64) with its
    scale and zero point, and clipped to its type (int16 audio has no scale)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    scale, zero_point = detail["quantization"]
    values = values.astype(np.float64)
    if scale:
        scaled = values / scale
        values = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values (of detail) as float32."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind != "f" and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)
