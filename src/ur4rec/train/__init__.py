"""Training: windows of training sequences, the trainer, runs from a config."""
