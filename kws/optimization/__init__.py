"""Optimization with TensorFlow Model Optimization: clustering, pruning, QAT on a checkpoint."""
