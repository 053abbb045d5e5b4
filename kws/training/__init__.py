"""Training: the loop, where it runs, its checkpoints and distillation (imports TensorFlow)."""
