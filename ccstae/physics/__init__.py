"""Simulated 4D-STEM: samples, crystals, the kinematic and multislice engines, noise, strain geometry (imports core)."""
