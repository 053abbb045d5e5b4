"""Models: the registry of architectures, their builders, and their parameter and MAC counts."""
