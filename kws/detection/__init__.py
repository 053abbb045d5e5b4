"""Detection on continuous audio: the detector, the test recordings, the scorers."""
