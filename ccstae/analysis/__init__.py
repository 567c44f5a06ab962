"""Strain maps scored: evaluation, noise floors, the classical py4DSTEM baseline (imports model and below)."""
