"""The float CC-ST-AE: preprocessing, network, warps, self-supervised training, health (imports physics, core)."""
