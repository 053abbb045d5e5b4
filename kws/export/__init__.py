"""Export: a Keras model to .tflite bytes, plain, raw-audio or streaming (imports TensorFlow)."""
