"""Runtime: a .tflite in LiteRT or TFLM, its metadata and its deployment report.

Nothing here imports TensorFlow, tf-keras or TensorFlow Model Optimization
(tests/consistency/test_layout.py checks it): a device's tools run without them."""
