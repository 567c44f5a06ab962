"""The config schema: each [section]'s keys with their TYPE, RANGE and a one-line DOC (defaults are
in configs/default.toml), one section dataclass per [section], one line per key, and each
section's cross-key check.

Ranges are intervals, "[0, 1)", "[1, inf)", "(0, inf)"; lists check each element, `n=` their
length (0: any, but not empty; None: may be empty); str keys take `choices`.

Split from ccstae/core/config.py (loading, merging and checking configs against this): the schema
is a table, read and extended on its own (a new key: a line here and one in default.toml).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def key(range_or_choices=None, doc: str = "", n: int | None = None):
    """One key of a section: an interval string ("[0, 1)") or a tuple of choices, and its doc."""
    meta = {"doc": doc, "n": n}
    if isinstance(range_or_choices, tuple):
        meta["choices"] = range_or_choices
    elif range_or_choices is not None:
        meta["range"] = range_or_choices
    return field(default=None, metadata=meta)


SCHEMA: dict[str, type] = {}


def section(name: str):
    def register(cls):
        SCHEMA[name] = dataclass(cls)
        return SCHEMA[name]
    return register


@section("simulate")
class Simulate:
    scan: list[int] = key("[1, inf)", "probe positions (Rx, Ry) of a simulated test scan", n=2)
    pattern: int = key("[8, 4096]", "detector pixels per side (Qx = Qy)")
    n_grains: int = key("[1, inf)", "Voronoi grains in the field of view")
    grain_rotation_deg: float = key("[0, 180]", "grain in-plane rotations drawn uniformly in [-this, +this]")
    rotation_field_deg: float = key("[0, 90]", "amplitude of the smooth rotation field inside grains")
    strain_amplitude: float = key("[0, 0.5]", "max |exx|, |eyy|, |exy| of the smooth strain field")
    strain_correlation: float = key("(0, inf)", "correlation length of the strain field")
    lattice_constant: float = key("(0, inf)", "lattice constant a (Angstrom)")
    beam_energy_kv: float = key("(0, inf)", "beam energy (kV)")
    camera_length_mm: float = key("(0, inf)", "camera length (mm): with detector_pixel_um the reciprocal pixel")
    detector_pixel_um: float = key("(0, inf)", "detector pixel pitch (um)")
    convergence_mrad: float = key("(0, inf)", "probe semi-angle (mrad): sets the Bragg-disk radius")
    disk_edge_px: float = key("[0, inf)", "soft edge width of the disks (pixels)")
    intensity_decay: float = key("[0, inf)", "B (Angstrom^2): disk intensity ~ exp(-B |g|^2 / 4)")
    central_disk: float = key("[0, inf)", "central-disk intensity relative to the first-order disks")
    jitter_px: float = key("[0, inf)", "std of random pattern-centre shifts (descan), pixels")
    seed: int = key("[0, inf)", "sample and noise seed of `ccstae simulate`")
    engine: str = key(("kinematic", "multislice"), "physics engine: disks from the lattice, or abTEM from atoms")
    crystal: str = key(("none", "MoS2", "WS2", "MoSe2", "WSe2", "SrTiO3", "Si110"), "specimen (none: `lattice`)")
    lattice: str = key(("hexagonal", "square", "rectangular"), "lattice of crystal none")
    lattice_constant_b: float = key("[0, inf)", "second constant b of a rectangular lattice (0: = a)")
    strain_field: str = key(("independent", "displacement"), "independent smooth maps, or one displacement u(r)")
    scan_step_A: float = key("(0, inf)", "probe step (Angstrom)")
    thickness_A: float = key("[0, inf)", "specimen thickness along the beam (Angstrom; 0: one cell)")
    sampling_A: float = key("(0, inf)", "multislice real-space sampling (Angstrom)")
    slice_thickness_A: float = key("(0, inf)", "multislice slice thickness (Angstrom)")
    central_share: float = key("[0, 1)", "kinematic: central disk's share of all the electrons (0: use central_disk)")


@section("distortion")
class Distortion:
    descan_px: float = key("[0, inf)", "descan: largest peak-to-peak of the pattern origin across the scan (px)")
    descan_smooth: float = key("[0, 1]", "share of the smooth term of the descan beside its linear ramp")
    ellipticity: float = key("[0, 0.5)", "elliptical distortion a/b - 1")
    ellipse_axis_deg: float = key("[-180, 180]", "long axis of the ellipse, degrees from Qx towards Qy")
    rotation_deg: float = key("[-360, 360]", "scan-detector rotation, degrees from Qx towards Qy")
    flip: bool = key(None, "detector transposed (Qx <-> Qy) relative to the scan, before the rotation")
    bad_pixel_fraction: float = key("[0, 0.5)", "fraction of bad pixels, half dead and half hot")
    gain_std: float = key("[0, 1)", "per-pixel gain spread (std around 1)")
    deflection_px: float = key("[0, inf)", "the specimen's DPC beam deflection, max pixels (what sets rotation)")


@section("noise")
class Noise:
    counts: float = key("(0, inf)", "electrons per pattern (the dose)")
    lorentz_gamma: float = key("(0, inf)", "Lorentzian background half width, fraction of the pattern")
    test_levels: list[float] = key("[0, 1)", "background levels w of the test scans", n=0)
    test_seed: int = key("[0, inf)", "seed of the test scans (another sample than training)")


@section("model")
class Model:
    filters: list[int] = key("[1, 1024]", "channels of each 3x3 convolution", n=0)
    dense: list[int] = key("[1, 4096]", "units of each dense layer")
    input_binning: int = key("[1, 64]", "sum-bin the pattern by this factor before the encoder")
    input_crop: int = key("[0, inf)", "pixels dropped at each edge after binning")
    central_mask: str = key(("auto", "none"), "mask the measured central disk (auto) or keep every pixel")
    lattice_symmetry: str = key(("auto", "hexagonal", "square", "rectangular"), "sets the rotation bound")


@section("train")
class Train:
    sample_kind: str = key(("random", "scan"), "simulated training sample: random patterns or one scan")
    sample_scan: list[int] = key("[1, inf)", "patterns of the training sample (rows, cols)", n=2)
    sample_grains: int = key("[1, inf)", "grains of a sample_kind scan")
    sample_seed: int = key("[0, inf)", "seed of the training sample")
    epochs: int = key("[1, inf)", "training epochs")
    batch_size: int = key("[1, inf)", "patterns per batch")
    learning_rate: float = key("(0, 1]", "Adam learning rate")
    max_patterns: int = key("[1, inf)", "patterns drawn from a large training cube")
    val_fraction: float = key("(0, 0.5)", "probe positions held out for the validation loss")
    patience: int = key("[1, inf)", "early stopping: epochs without a better validation loss")
    noise_mode: str = key(("none", "fixed", "mixed", "curriculum", "auto"),
                          "noise injection while training (auto: chosen from the cube's background and dose)")
    noise_levels: list[float] = key("[0, 1)", "background levels w drawn while training", n=0)
    noise_per: str = key(("sample", "batch"), "a level per pattern or per batch")
    blur_start: float = key("[0, inf)", "loss blur (pixels) at the start")
    blur_end: float = key("[0, inf)", "loss blur (pixels) after 60 % of training")
    mask_inner: float = key("[0, 0.5)", "inner radius of the annular loss mask, fraction of the pattern")
    mask_outer: float = key("(0, 0.5]", "outer radius of the annular loss mask")
    reference_freeze: float = key("[0, 1]", "fraction of the epochs the reference stays at its initial value")
    distill_epochs: int = key("[0, inf)", "self-distillation epochs after the cycle epochs (0: none)")
    distill_learning_rate: float = key("(0, 1]", "Adam learning rate of self-distillation (cosine decay)")
    distill_steps: int = key("[1, 50]", "Gauss-Newton steps that refine each training pattern's target")
    seed: int = key("[0, inf)", "training seed")

    @staticmethod
    def check(t: dict) -> str | None:
        if not t["mask_inner"] < t["mask_outer"]:
            return f"mask_inner {t['mask_inner']} must be below mask_outer {t['mask_outer']}"
        return None


BITS = "[2, 32]"  # every fixed-point width; integer bits lie in [0, bits): the one place they are checked


@section("quant")
class Quant:
    weight_bits: int = key(BITS, "bits of every weight")
    bias_bits: int = key(BITS, "bits of every bias")
    activation_bits: int = key(BITS, "bits of every ReLU output")
    input_bits: int = key(BITS, "bits of the encoder input x = sqrt(I / s)")
    input_integer: int = key("[0, 32)", "integer bits of the input (its range [0, 2^this))")
    activation_integer: int = key("[0, 32)", "integer bits of the ReLU outputs")
    count_bits: int = key("[1, 32]", "the detector's counter width: the front end clips counts to it")
    sparsity: float = key("[0, 1)", "target fraction of zero weights (pruning)")
    epochs: int = key("[1, inf)", "QAT fine-tuning epochs")
    learning_rate: float = key("(0, 1]", "QAT learning rate")
    blur: float = key("[0, inf)", "loss blur during fine-tuning (pixels)")

    @staticmethod
    def check(q: dict) -> str | None:
        for name in ("input", "activation"):
            problem = fixed_point_problem(name, q[f"{name}_bits"], q[f"{name}_integer"])
            if problem:
                return problem
        return None


@section("firmware")
class Firmware:
    backend: str = key(("Vitis", "Vivado"), "hls4ml backend")
    io_type: str = key(("io_stream", "io_parallel"), "io_stream for CNNs (io_parallel unrolls convolutions)")
    strategy: str = key(("Latency", "Resource"), "hls4ml strategy")
    reuse_factor: int = key("[1, inf)", "multiplications per multiplier")
    clock_period_ns: float = key("(0, inf)", "target clock period (ns)")
    part: str = key(None, "FPGA part (ccstae/firmware/convert.py checks the family)")
    csim_patterns_per_level: int = key("[0, inf)", "noisy test patterns per level in tb_data")
    predict_patterns_per_level: int = key("[0, inf)", "test patterns per level through hls4ml's C++ (0: all)")
    frontend_pixels_per_clock: int = key("[1, 64]", "raw pixels per AXI-Stream word of the front end")
    frontend_patterns_per_level: int = key("[0, inf)", "raw-count patterns per level through the front-end C-sims")
    centroid_testbench_patterns_per_level: int = key("[0, inf)", "raw-count patterns per level through the "
                                                     "centroid core's g++ testbench (its ctypes library takes all)")


@section("sweep")
class Sweep:
    mode: str = key(("one_at_a_time", "product"), "each axis alone around the config, or every combination")
    input_binning: list[int] = key("[1, 64]", "input binnings to try", n=0)
    bits: list[int] = key(BITS, "weight = bias = activation bits to try", n=0)
    sparsity: list[float] = key("[0, 1)", "sparsities to try", n=0)
    reuse_factor: list[int] = key("[1, inf)", "reuse factors to try", n=0)
    strategy: list[str] = key(("Latency", "Resource"), "strategies to try", n=0)
    io_type: list[str] = key(("io_stream", "io_parallel"), "io types to try", n=0)
    eval_scan: list[int] = key("[0, inf)", "top-left rows x cols of each test scan evaluated (0: all)", n=2)
    testbench: bool = key(None, "also run the g++ testbench per variant")
    detectors: list[str] = key(None, "detectors to recommend for (ccstae/firmware/estimate.py DETECTORS)")
    parts: list[str] = key(None, "parts to fit; the first is the one recommendations must fit")
    goal_patterns_per_s: float = key("(0, inf)", "throughput target")
    goal_latency_us: float = key("(0, inf)", "latency target (us)")
    goal_mae_ratio: float = key("(0, inf)", "firmware MAE at most this times the float MAE")
    test_counts: list[float] = key("(0, inf)", "extra test sets at these doses (electrons per pattern)")
    test_presets: list[str] = key(None, "extra test sets from these presets or TOML configs")


@section("robustness")
class Robustness:
    fixed_levels: list[float] = key("[0, 1)", "one fixed-noise training regime per level")
    modes: list[str] = key(("mixed", "curriculum", "none"), "more regimes over [train] noise_levels")
    test_levels: list[float] = key("[0, 1)", "background levels w of the test scans", n=0)
    seeds: list[int] = key("[0, inf)", "test scan seeds: each a new sample with its own noise", n=0)
    models: list[str] = key(("float", "quantized", "firmware"), "models evaluated", n=0)
    firmware_patterns: int = key("[0, inf)", "C-simulated patterns per test cube (0: all)")
    baseline: bool = key(None, "run py4DSTEM on the same cubes")
    test_counts: list[float] = key("(0, inf)", "extra test sets at these doses (electrons per pattern)")
    test_presets: list[str] = key(None, "extra test sets from these presets or TOML configs")

    @staticmethod
    def check(r: dict) -> str | None:
        if not r["fixed_levels"] and not r["modes"]:
            return "no training regime (fixed_levels and modes are both empty)"
        return None


def fixed_point_problem(name: str, bits, integer) -> str | None:
    """The one check of a fixed-point format (quant/qmodel.QuantSpec uses it too)."""
    if not 2 <= bits <= 32 or not 0 <= integer < bits:
        return f"{name}_bits={bits}, {name}_integer={integer}: need 2 <= bits <= 32 and 0 <= integer < bits"
    return None
