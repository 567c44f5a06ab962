"""QKeras encoder: quantization-aware training and pruning of the float encoder (imports model and below)."""
