"""`ccstae quantize`, `convert`, `hls` and `vendor`: the quantized encoder and its firmware (quant,
firmware, pipeline)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_quantize_parser(subparsers):
    p = subparsers.add_parser("quantize", help="QKeras encoder: quantization-aware training and pruning",
                              description="Mirror a float run's encoder in QKeras, prune it (tfmot) and fine-tune "
                                          "it with the same self-supervised loss and noise injection.")
    p.add_argument("--model", type=Path, required=True, metavar="RUN_DIR", help="the float run")
    p.add_argument("--bits", type=int, help="weight and activation bits (default: the config's [quant])")
    p.add_argument("--sparsity", type=float, help="target fraction of zero weights (default: [quant])")
    p.add_argument("--input", type=Path, metavar="CUBE", help="training cube (default: the float run's)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="e.g. runs/NAME-q8-s50")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_quantize)


def run_quantize(args) -> int:
    from ccstae.quant.qat import quantize
    from ccstae.quant.qmodel import load_qencoder, qencoder_summary

    report = quantize(args.model, args.out, args.bits, args.sparsity, args.input, progress=not args.no_progress)
    print(qencoder_summary(load_qencoder(args.out / "encoder.h5")))
    sparsity = ", ".join(f"{k} {100 * v:.0f} %" for k, v in report["sparsity"].items())
    print(f"quantized {args.out}: validation loss {report['best_val_loss']:.4g} "
          f"(float {report['float_best_val_loss']:.4g}); zero weights: {sparsity}")
    return 0


def add_convert_parser(subparsers):
    p = subparsers.add_parser("convert", help="hls4ml project of a quantized encoder, C-simulated bit-exact",
                              description="Convert a quantized run's encoder with hls4ml (bit_exact), fill "
                                          "tb_data with noisy simulated patterns and check both C-simulations.")
    p.add_argument("--model", type=Path, required=True, metavar="QRUN_DIR", help="a quantized run")
    p.add_argument("--out", type=Path, required=True, metavar="PRJ_DIR", help="e.g. hls_projects/NAME")
    p.add_argument("--backend", help="Vitis (default) or Vivado")
    p.add_argument("--io-type", help="io_stream (default) or io_parallel")
    p.add_argument("--part", help="FPGA part (default: the config's)")
    p.add_argument("--reuse", type=int, help="reuse factor")
    p.add_argument("--strategy", help="Latency or Resource")
    p.add_argument("--input", type=Path, metavar="CUBE", help="test patterns for tb_data (default: simulate)")
    p.set_defaults(handler=run_convert)


def run_convert(args) -> int:
    from ccstae.pipeline.hls import convert_run

    overrides = {"backend": args.backend, "io_type": args.io_type, "part": args.part,
                 "reuse_factor": args.reuse, "strategy": args.strategy}
    res = convert_run(args.model, args.out, {k: v for k, v in overrides.items() if v is not None}, args.input)
    print(res["text"])
    return 0 if res["exact"] else 1


def add_hls_parser(subparsers):
    p = subparsers.add_parser("hls", help="the whole pipeline: simulate, train, quantize, convert, C-simulate",
                              description="What `make hls` runs. Each stage is skipped when its result for the "
                                          "same settings exists (data/, runs/, hls_projects/).")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--allow-overflow", action="store_true",
                   help="exit 0 even when the saturation check finds an overflow or a large deviation")
    p.add_argument("--core", choices=("encoder", "centroid", "both"), default="both",
                   help="encoder: the encoder alone; centroid: the windowed-centroid core alone (nothing is "
                        "trained); both: each C-simulated and compared on the same test cubes (default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_hls)


def run_hls(args) -> int:
    from ccstae.pipeline.hls import problems, run_pipeline

    summary = run_pipeline(args.config, progress=not args.no_progress, core=args.core)
    found = problems(summary)
    if args.allow_overflow:
        found = [p for p in found if "bit-exact" in p]
    for p in found:
        print(f"ccstae hls: FAILED: {p}", file=sys.stderr)
    return 1 if found else 0


def add_vendor_parser(subparsers):
    p = subparsers.add_parser("vendor", help="Vitis/Vivado HLS C-simulation or synthesis, where installed",
                              description="Run the vendor flow on the project `ccstae hls` made for a config. "
                                          "Where vitis_hls / vivado_hls is not on PATH, say so and exit 0, or "
                                          "exit 2 with --require (a CI job that must not pass without the tool).")
    p.add_argument("step", choices=("csim", "synth"))
    p.add_argument("--require", action="store_true", help="a missing vendor tool is an error (exit 2), not a skip")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--project", type=Path, help="project folder (default: the config's from `ccstae hls`)")
    p.set_defaults(handler=run_vendor)


def run_vendor(args) -> int:
    from ccstae.firmware import vendor
    from ccstae.pipeline.hls import project_dir

    prj = args.project or project_dir(args.config)
    from ccstae.core.errors import UserError

    if vendor.find_vendor_tool() is None:
        if args.require:
            raise UserError(f"vitis_hls/vivado_hls not on PATH: `vendor {args.step} --require` cannot run without them")
        print(f"{vendor.SKIP_REASON}; the g++ C-simulation of `make hls` is what runs here")
        return 0
    if not prj.exists():
        raise UserError(f"{prj}: no HLS project; run `make hls` (ccstae hls) first")
    result = (vendor.vendor_csim if args.step == "csim" else vendor.vendor_synth)(prj)
    print(result)
    return 0

