"""C-simulation of the firmware, two ways, each compared bit for bit with the QKeras encoder.

1. compare_compiled: hls4ml compiles the HLS C++ into a shared library and runs it from
   Python (hls_model.predict). Fast to iterate; the same C++ as the firmware.
2. run_testbench: builds the project's own myproject_test.cpp with g++ (what Vitis HLS
   C-simulation runs, minus the tool) on tb_data/, and reads tb_data/csim_results.log.

Bit-exact with QKeras is necessary, not sufficient: where a fixed-point range is too narrow
both saturate alike. saturation_check compares the firmware with the FLOAT encoder to catch it.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.ctypeslib as npc

from ccstae.firmware.convert import FixedFormat, io_formats, project_io_formats
from ccstae.core.errors import UserError

GXX_FLAGS = ["-O2", "-std=c++17", "-Ifirmware", "-Ifirmware/ap_types", '-DWEIGHTS_DIR="firmware/weights"']


class BuildError(RuntimeError):
    """The generated testbench did not compile: a bug in the generated code or the toolchain."""


@dataclass
class CompareResult:
    """Firmware vs QKeras on n_patterns patterns. mismatches: (pattern, output, qkeras, firmware)."""

    n_patterns: int
    n_outputs: int
    exact_fraction: float
    mismatches: list = field(default_factory=list)
    seconds: float = 0.0  # running the firmware (predict, or the testbench executable)
    build_seconds: float = 0.0  # g++ (run_testbench only; 0 when the executable was up to date)

    @property
    def exact(self) -> bool:
        return not self.mismatches

    def report(self, limit: int = 10) -> str:
        head = (f"{self.n_patterns} patterns x {self.n_outputs} outputs: "
                f"{100 * self.exact_fraction:.2f} % bit-exact, {len(self.mismatches)} mismatches")
        rows = [f"  pattern {i} output {j}: qkeras {q!r} firmware {f!r} (diff {f - q:+.3g})"
                for i, j, q, f in self.mismatches[:limit]]
        if len(self.mismatches) > limit:
            rows.append(f"  ... {len(self.mismatches) - limit} more")
        return "\n".join([head] + rows)


def compare_outputs(reference, firmware, seconds: float = 0.0) -> CompareResult:
    """QKeras outputs vs firmware outputs of the same patterns, bit for bit."""
    reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
    firmware = np.asarray(firmware, np.float64).reshape(len(firmware), -1)
    if reference.shape != firmware.shape:
        raise ValueError(f"firmware gave {firmware.shape} outputs, QKeras {reference.shape}")
    bad = np.argwhere(reference != firmware)
    mismatches = [(int(i), int(j), float(reference[i, j]), float(firmware[i, j])) for i, j in bad]
    return CompareResult(len(reference), reference.shape[1], float(np.mean(reference == firmware)), mismatches,
                         seconds)


def ensure_compiled(hls_model) -> float:
    """Compile once per hls model (hls4ml would rebuild the library on every compile() call)."""
    if getattr(hls_model, "_top_function_lib", None) is not None:
        return 0.0
    t0 = time.time()
    hls_model.compile()
    return time.time() - t0


def sim_threads() -> int:
    """Threads for the C-simulations: one per core this process may use."""
    return max(1, min(len(os.sched_getaffinity(0)), 16))


def library_copies(lib_path, k: int) -> list:
    """k copies of a compiled C-simulation library, each loaded under its own name.

    The C++ keeps state in function statics (hls4ml's streams and line buffers), so one loaded
    library runs one pattern at a time; each copy has its own statics, and ctypes releases the
    GIL during a call, so k threads run k patterns side by side on k cores. The same machine
    code runs, so every bit is the same as one library's. The copies' files are removed once
    loaded (the mapping stays). A library whose statics are STB_GNU_UNIQUE symbols (template
    statics under g++'s default) would share them across copies: build with -fno-gnu-unique
    (hls4ml's library has none; the front end's build sets the flag)."""
    libs = []
    for _ in range(k):
        copy = Path(lib_path).with_name(f"{Path(lib_path).stem}-copy-{uuid.uuid4().hex[:8]}.so")
        shutil.copy2(lib_path, copy)
        try:
            libs.append(ctypes.CDLL(str(copy)))
        finally:
            copy.unlink()
    return libs


def run_split(libs: list, n: int, run) -> np.ndarray:
    """run(lib, indices) -> rows, over n items split into one contiguous chunk per library."""
    chunks = [c for c in np.array_split(np.arange(n), len(libs)) if len(c)]
    if len(chunks) == 1:
        return run(libs[0], chunks[0])
    with ThreadPoolExecutor(len(chunks)) as pool:
        return np.concatenate(list(pool.map(run, libs, chunks)))


def _hls_copies(hls_model, k: int) -> list:
    """k loaded copies of hls_model's compiled library, made once per compiled library."""
    lib = hls_model._top_function_lib  # hls4ml 1.3 keeps the loaded library here (ModelGraph._compile)
    cached = getattr(hls_model, "_ccstae_copies", None)
    if cached is None or cached[0] != lib._name or len(cached[1]) < k:
        hls_model._ccstae_copies = (lib._name, library_copies(lib._name, k))
    return hls_model._ccstae_copies[1][:k]


def predict_firmware(hls_model, x, threads: int | None = None) -> np.ndarray:
    """Run the compiled C++ on x (N, H, W, C). hls4ml takes C-contiguous float64 to keep every bit.

    Patterns go to `threads` copies of the library side by side (library_copies); what each
    runs is hls4ml's own predict loop: <project>_double(input, output) once per pattern."""
    ensure_compiled(hls_model)
    x64 = np.ascontiguousarray(np.asarray(x, np.float32), dtype=np.float64)
    threads = sim_threads() if threads is None else threads
    outputs = hls_model.get_output_variables()
    if threads < 2 or len(x64) < 2 * threads or len(outputs) != 1 or len(hls_model.get_input_variables()) != 1:
        return np.asarray(hls_model.predict(x64), np.float64).reshape(len(x64), -1)
    n_out, name = int(outputs[0].size()), hls_model.config.get_project_name() + "_double"
    flat = x64.reshape(len(x64), -1)

    def run(lib, idx):
        top = getattr(lib, name)
        top.restype = None
        top.argtypes = [npc.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
        out = np.zeros((len(idx), n_out), np.float64)
        for j, i in enumerate(idx):
            top(flat[i], out[j])
        return out

    return run_split(_hls_copies(hls_model, threads), len(flat), run)


def compare_compiled(hls_model, qencoder, x) -> CompareResult:
    """hls_model.predict vs qencoder.predict on the same float32 inputs: every output bit-equal?"""
    x32 = np.asarray(x, np.float32)  # both sides see the same float32 values
    ensure_compiled(hls_model)
    t0 = time.time()
    firmware = predict_firmware(hls_model, x32)
    seconds = time.time() - t0
    reference = qencoder.predict(x32, verbose=0, batch_size=256)
    return compare_outputs(reference, firmware, seconds)


def _read_rows(path: Path) -> np.ndarray:
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(rows, np.float64)


def build_testbench(prj_dir, rebuild: bool = False) -> float:
    """g++ the generated testbench into prj_dir/csim; returns seconds (0 when already built)."""
    prj_dir = Path(prj_dir).resolve()  # the executable is run by absolute path from inside prj_dir
    exe = prj_dir / "csim"
    sources = [prj_dir / "myproject_test.cpp", prj_dir / "firmware" / "myproject.cpp"]
    for s in sources:
        if not s.exists():
            raise UserError(f"{prj_dir}: no {s.relative_to(prj_dir)}; convert the encoder first (ccstae.firmware.convert)")
    if not rebuild and exe.exists() and exe.stat().st_mtime > max(s.stat().st_mtime for s in sources):
        return 0.0
    # The two translation units side by side (one core each), then the link: what
    # `g++ myproject_test.cpp firmware/myproject.cpp -o csim` does, in about half the time.
    (prj_dir / "csim_build").mkdir(exist_ok=True)
    objects = [f"csim_build/{Path(src).stem}.o" for src in sources]
    commands = [[*GXX_FLAGS, "-c", str(src.relative_to(prj_dir)), "-o", obj] for src, obj in zip(sources, objects)]
    t0 = time.time()
    with ThreadPoolExecutor(len(commands)) as pool:
        list(pool.map(lambda args: run_gxx(args, prj_dir, "the testbench"), commands))
    run_gxx([*objects, "-o", "csim"], prj_dir, "the testbench")
    return time.time() - t0


def run_gxx(args: list, cwd, what: str, purpose: str = "build the C testbench") -> None:
    """`g++ ARGS` in cwd, for every C-simulation build (the encoder's testbench, the front end's,
    the centroid core's); a failure prints its first errors and raises BuildError naming `what`."""
    gxx = shutil.which("g++")
    if gxx is None:
        raise UserError(f"g++ not on PATH: install g++ (e.g. apt-get install g++) to {purpose}")
    cmd = [gxx, *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        msg = (f"g++ failed to build {what} in {cwd} (exit {proc.returncode}):\n  "
               + " ".join(cmd) + "\n" + "\n".join(errors[:20] or proc.stderr.splitlines()[-30:]))
        print(msg, file=sys.stderr)
        raise BuildError(msg)


def run_testbench(prj_dir, rebuild: bool = False, timeout: float = 600) -> CompareResult:
    """Build and run myproject_test.cpp on tb_data/ and compare its log with the expected outputs.

    The log prints ~6 significant digits: both sides are snapped to the output type's LSB
    grid, read from the project's headers, before comparing.
    """
    prj_dir = Path(prj_dir).resolve()  # the executable is run by absolute path from inside prj_dir
    tb = prj_dir / "tb_data"
    for name in ("tb_input_features.dat", "tb_output_predictions.dat"):
        if not (tb / name).exists():
            raise UserError(f"{tb / name} missing: write it with ccstae.firmware.convert.make_tb_data first")
    build_s = build_testbench(prj_dir, rebuild)
    log = tb / "csim_results.log"
    if log.exists():
        log.unlink()  # never compare with the log of an earlier run
    t0 = time.time()
    proc = subprocess.run([str(prj_dir / "csim")], cwd=prj_dir, capture_output=True, text=True, timeout=timeout)
    run_s = time.time() - t0
    if proc.returncode != 0 or not log.exists():
        raise BuildError(f"testbench in {prj_dir} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                         f"\n{proc.stderr[-2000:]}")
    out_fmt = project_io_formats(prj_dir)[1]
    expected = out_fmt.snap(_read_rows(tb / "tb_output_predictions.dat"))
    firmware = out_fmt.snap(_read_rows(log))
    if len(firmware) != len(expected):
        raise BuildError(f"testbench wrote {len(firmware)} results for {len(expected)} patterns ({log})")
    result = compare_outputs(expected, firmware, run_s)
    result.build_seconds = build_s
    return result


def saturation_check(hls_predictions, float_predictions, output_format, tolerance: float = 0.25) -> dict:
    """Does the firmware's output range clip what the float encoder computes?

    Run it on the noisiest patterns. stuck_fraction: outputs at the type's max or min (the
    quantizer saturated); max_abs_deviation: firmware vs float. overflow: some output is stuck
    while the float value lies beyond the range, i.e. a bit-exact but wrong result. tolerance
    flags deviations larger than quantization alone explains (the inner quantizers also clip).
    output_format: a FixedFormat, or the hls model (its output variable's type is used). The
    fairest float reference is ccstae.quant.qmodel.float_twin(qencoder): same (pruned) weights.
    """
    if not isinstance(output_format, FixedFormat):
        output_format = io_formats(output_format)[1]
    fw = np.asarray(hls_predictions, np.float64).reshape(len(hls_predictions), -1)
    fl = np.asarray(float_predictions, np.float64).reshape(len(float_predictions), -1)
    lo, hi = output_format.min, output_format.max
    stuck = (fw >= hi) | (fw <= lo)
    beyond = (fl > hi) | (fl < lo)
    dev = np.abs(fw - fl)
    return {
        "n_patterns": int(len(fw)),
        "output_type": str(output_format),
        "range": [lo, hi],
        "stuck_fraction": float(stuck.mean()),
        "stuck_fraction_per_output": stuck.mean(0).round(6).tolist(),
        "float_beyond_range_fraction": float(beyond.mean()),
        "max_abs_deviation": float(dev.max()) if dev.size else 0.0,
        "mean_abs_deviation": float(dev.mean()) if dev.size else 0.0,
        "overflow": bool((stuck & beyond).any()),
        "large_deviation": bool(dev.size and dev.max() > tolerance),
    }


def check_saturation(hls_model, float_encoder, x, tolerance: float = 0.25) -> dict:
    """saturation_check on x: firmware (compiled) vs the float encoder."""
    fw = predict_firmware(hls_model, x)
    fl = float_encoder.predict(np.asarray(x, np.float32), verbose=0, batch_size=256)
    return saturation_check(fw, fl, io_formats(hls_model)[1], tolerance)


def edge_case_patterns(shape, top: float = 1.0, over: float = 4.0) -> np.ndarray:
    """Patterns every firmware must get right: all zero, all at the top of the nominal input
    range, beyond the input type (must saturate like QKeras), a single hot pixel, a checkerboard.

    Nothing above 1e3: beyond ~1e5 QKeras itself is off by an LSB (its straight-through trick
    x + stop_gradient(q(x) - x) rounds in float32), while the firmware saturates correctly."""
    h, w, c = shape
    zero = np.zeros(shape)
    full = np.full(shape, top)
    hot = zero.copy()
    hot[h // 2, w // 2] = over
    checker = (np.indices((h, w)).sum(0) % 2)[..., None] * np.ones(c) * over
    ramp = np.linspace(0, over, h * w * c).reshape(shape)
    return np.stack([zero, full, np.full(shape, over), np.full(shape, 1e3), hot, checker, ramp]).astype(np.float32)

