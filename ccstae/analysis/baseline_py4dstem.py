"""py4DSTEM, the classical baseline's optional extra (`.[baseline]`): whether it imports, its
import, a quiet mode for its progress bars and warnings, and its Bragg-disk detection.

Shared by the measured geometry (ccstae/analysis/baseline_geometry.py) and the lattice fit
(ccstae/analysis/baseline_fit.py): py4DSTEM is imported only when a baseline is computed.
"""
from __future__ import annotations

import warnings

import numpy as np

from ccstae.core.errors import UserError

INSTALL_HINT = "py4DSTEM is not installed: pip install -e '.[baseline]' (py4DSTEM==0.14.18)"


def available() -> tuple[bool, str]:
    """(True, version) when py4DSTEM imports, else (False, the reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py4DSTEM
    except ImportError as e:  # a broken install that raises anything else is a bug: let it show
        return False, f"{INSTALL_HINT} ({type(e).__name__}: {e})"
    return True, py4DSTEM.__version__


def require():
    """py4DSTEM, imported; UserError (the install hint) when it is not installed."""
    ok, why = available()
    if not ok:
        raise UserError(why)
    import py4DSTEM

    return py4DSTEM


def find_disks(py4DSTEM, data: np.ndarray, s: dict, params, absolute: float):
    """py4DSTEM's find_Bragg_disks with a synthetic disk template: s, the scaled pixel settings
    (BaselineParams.scaled); params, the BaselineParams (its kernel); absolute, the intensity floor."""
    dc = py4DSTEM.DataCube(data=np.ascontiguousarray(data, np.float32))
    probe = py4DSTEM.Probe.generate_synthetic_probe(s["radius"], s["width"], data.shape[-2:])
    kernel = probe.get_kernel(mode="flat") if params.kernel == "flat" else \
        probe.get_kernel(mode="sigmoid", radii=s["kernel_radii"])
    # No threshold relative to the brightest peak (that may be the rim of the blanked centre):
    # one absolute floor, relative to the Bragg disks.
    return dc.find_Bragg_disks(kernel, sigma_cc=s["sigma_cc"], subpixel="multicorr",
                               upsample_factor=s["upsample_factor"], minRelativeIntensity=0,
                               minAbsoluteIntensity=absolute, minPeakSpacing=s["minPeakSpacing"],
                               edgeBoundary=s["edgeBoundary"], maxNumPeaks=70)


class quiet:
    """Silence py4DSTEM's progress bars and warnings unless progress is asked for."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self):
        import contextlib
        import io

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        if not self.progress:
            self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False
