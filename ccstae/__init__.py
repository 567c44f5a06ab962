"""ccstae: noise-robust 4D-STEM strain mapping from simulation to FPGA firmware.

Rooms by role, each importing only the rooms above it in this list:

    core      configuration, errors, file I/O
    physics   simulated scans (kinematic, multislice), noise, strain geometry
    model     the float CC-ST-AE: preprocessing, network, training
    analysis  strain maps scored: evaluation, noise floors, the py4DSTEM baseline
    quant     the QKeras encoder, quantization-aware training, pruning
    firmware  hls4ml conversion, C-simulation, front end, vendor flows, estimates
    pipeline  stages kept by content hash, `make hls`, the Dask study runner
    studies   the sweep and the robustness study
    cli       the command line, a thin face over the rest
"""
__version__ = "0.1.0"
