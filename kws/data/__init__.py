"""Data: audio files, the Speech Commands index and split, augmentation, the training input."""
