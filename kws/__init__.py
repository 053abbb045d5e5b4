"""The keyword-spotting library behind the scripts at the repository's root.

One folder per concern; kws/runtime/ (and all it imports) never imports TensorFlow:
    data/          audio, the Speech Commands index and split, augmentation, the training input
    models/        the registry of architectures and their builders, parameter and MAC counts
    training/      the training loop, distribution, checkpoints, distillation
    optimization/  TensorFlow Model Optimization's techniques on a checkpoint
    export/        a Keras model to .tflite: quantization, calibration, raw-audio, streaming
    runtime/       a .tflite in LiteRT or TFLM, its metadata and deployment report
    detection/     keywords on continuous audio: the detector, test recordings, scorers
    wake_word/     a wake-word detector from a typed word on a frozen backbone
"""
