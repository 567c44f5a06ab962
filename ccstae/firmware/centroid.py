"""The classical strain core: windowed Bragg-disk centroids and a fixed least-squares lattice fit,
in integers, bit for bit what ccstae/firmware/centroid/ccstae_centroid.h computes (issue 23).

    core = fit_core(mean_pattern, sum_bits)         # reference disks from the training cube's mean
    raw = core_outputs(core, bin_counts(counts, preprocess_params))   # (N, 6) integers
    m = core_matrices(core, raw)                     # (N, 2, 2) pattern-frame matrices, as the encoder's M

The core reads the front end's binned, cropped and masked integer counts (before the LUT: the sqrt
transfer would bias every centroid). Per pattern:

1. peak search, streaming: a BOX x BOX sum around every pixel (one line buffer of column sums), its
   largest value in each disk's search sector (a ROM: the pixels nearer that reference disk than any
   other and within SEARCH of it) gives the disk's window centre (the first largest in raster order);
2. centroid: over the window's inner disk (radius INNER) the sums S = sum n, SX = sum n dx,
   SY = sum n dy, and the ring INNER < r <= RING gives the background level B / NB per pixel;
   with it subtracted, off = (NB SX - B XI) / (NB S - B NI) in 2^-F pixels (XI = sum dx of the inner
   pixels on the frame, NI their count), truncated towards zero, clamped to the window, 0 when the
   background-subtracted sum is not positive;
3. fit: positions p = window centre + off - centre, (x, y) = (col, row); [c, A] of p = c + A g
   over the reference disks g by a precomputed pseudo-inverse in 2^-PF (PINV, 3 x K), rounded to
   2^-OUT_F: outputs A_xx, A_xy, A_yx, A_yy, c_x, c_y.

The outputs' A is the encoder's M (pattern = M reference, x along columns): the host sends it through
ccstae/physics/strain.strain_maps to the user frame (py4DSTEM's) like the encoder's. Every width
comes from the binned count's bits and the window sizes (widths(); C++ derives the same), so a
frame of saturated counts cannot overflow; the reference checks each intermediate against it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ccstae.core.errors import UserError

OUTPUTS = ("A_xx", "A_xy", "A_yx", "A_yy", "c_x", "c_y")
MAX_DISKS = 64
MIN_SHARE = 0.05  # a reference disk holds at least this share of the strongest one (as floor.centroid_floor)
SEARCH = 0.75     # sector radius, of the nearest gap between reference disks: room for rotated lattices


def clog2(x: int) -> int:
    """Bits to hold 0 .. x-1 (ceil(log2(x)), 0 for x <= 1): the C++ clog2."""
    return 0 if x <= 1 else (int(x) - 1).bit_length()


@dataclass
class CoreParams:
    """Everything the core needs, measured once from the training cube (no labels).

    size: pixels per side of the binned, cropped frame; sum_bits: bits of a binned count;
    centre: (row, col) of the central disk; disks: (K, 2) reference disk centres (row, col);
    box: side of the peak-search box (odd); inner, ring: window radii (pixels); search: sector
    radius; others: (J, 2) lattice points not measured (cut by the frame's edge), which bound the
    sectors too; frac_bits F, pinv_bits PF, out_frac OUT_F: the fixed-point grids."""

    size: int
    sum_bits: int
    centre: tuple
    disks: np.ndarray
    box: int
    inner: float
    ring: float
    search: float
    others: np.ndarray | None = None
    frac_bits: int = 12
    pinv_bits: int = 28
    out_frac: int = 20

    def __post_init__(self):
        self.disks = np.asarray(self.disks, np.float64).reshape(-1, 2)
        self.others = np.zeros((0, 2)) if self.others is None else np.asarray(self.others, np.float64).reshape(-1, 2)
        self.centre = (float(self.centre[0]), float(self.centre[1]))
        check(self)

    @property
    def half(self) -> int:
        return self.box // 2

    @property
    def reach(self) -> int:
        """Half side of the square the window's offsets lie in."""
        return int(math.floor(self.ring))

    def design(self) -> np.ndarray:
        """(K, 3) rows [1, g_x, g_y]: g the reference disk minus the centre, x along columns."""
        g = self.disks - np.asarray(self.centre)
        return np.column_stack([np.ones(len(g)), g[:, 1], g[:, 0]])

    def pinv(self) -> np.ndarray:
        """(3, K) integers: the pseudo-inverse of design() in 2^-PF."""
        return np.rint(np.linalg.pinv(self.design()) * 2.0 ** self.pinv_bits).astype(np.int64)

    def centre_fixed(self) -> tuple:
        """(row, col) of the centre in 2^-F pixels."""
        return tuple(int(round(v * 2 ** self.frac_bits)) for v in self.centre)

    def offsets(self) -> np.ndarray:
        """(M, 3) rows [dy, dx, kind] of the window, raster order: kind 1 inner, 2 background ring."""
        q = self.reach
        dy, dx = np.mgrid[-q:q + 1, -q:q + 1]
        d2 = (dy ** 2 + dx ** 2).ravel()
        kind = np.where(d2 <= self.inner ** 2, 1, np.where(d2 <= self.ring ** 2, 2, 0))
        return np.column_stack([dy.ravel(), dx.ravel(), kind])[kind > 0].astype(np.int64)

    def sectors(self) -> np.ndarray:
        """(size, size) ROM: 1 + the disk whose search sector holds the box centred on the pixel, 0: none.
        A sector: the pixels within `search` of its reference disk and nearer to it than to any other
        lattice point (`others`: a disk the edge cuts is still a disk) or to the centre (the central disk,
        unmasked, would outshine the Bragg disks), whose box
        lies on the frame (the streaming box sum sees no others)."""
        rows, cols = np.mgrid[:self.size, :self.size]
        points = np.vstack([self.disks, [self.centre], self.others])
        d = np.hypot(rows[..., None] - points[:, 0], cols[..., None] - points[:, 1])
        nearest = d.argmin(-1)
        h = self.half
        on = (rows >= h) & (rows < self.size - h) & (cols >= h) & (cols < self.size - h)
        on &= (nearest < len(self.disks)) & (d.min(-1) <= self.search)
        return np.where(on, nearest + 1, 0).astype(np.int64)

    def widths(self) -> dict:
        """Bits of every intermediate (signed ones include the sign), from sum_bits and the window;
        ccstae_centroid.h derives the same from the constants of centroid_params.h."""
        off = self.offsets()
        n_in, n_ring, q = int((off[:, 2] == 1).sum()), int((off[:, 2] == 2).sum()), self.reach
        pix = self.sum_bits
        w = {"box": pix + clog2(self.box ** 2 + 1)}
        w["s"] = pix + clog2(n_in + 1)                    # sum n over the inner pixels
        w["b"] = pix + clog2(n_ring + 1)                  # sum n over the ring
        w["sx"] = pix + clog2(n_in * q + 1) + 1           # sum n dx (signed)
        w["xi"] = clog2(n_in * q + 1) + 1                 # sum dx of the inner pixels (signed)
        w["ni"], w["nb"] = clog2(n_in + 1), clog2(n_ring + 1)
        w["num"] = max(w["nb"] + w["sx"], w["b"] + w["xi"]) + 1
        w["den"] = max(w["nb"] + w["s"], w["b"] + w["ni"]) + 2
        w["shifted"] = w["num"] + self.frac_bits
        w["off"] = clog2(q + 1) + self.frac_bits + 1      # clamped to the window
        w["pos"] = clog2(self.size + q + 1) + self.frac_bits + 2
        w["pinv"] = int(np.abs(self.pinv()).max()).bit_length() + 1
        w["acc"] = w["pos"] + w["pinv"] + clog2(len(self.disks))
        w["shift"] = self.frac_bits + self.pinv_bits - self.out_frac
        w["out"] = w["acc"] - w["shift"] + 1
        return w


def check(core: CoreParams) -> None:
    """The refusals, one line each (the C++ static_asserts the same)."""
    k, size = len(core.disks), int(core.size)
    if k < 3:
        raise UserError(f"centroid core: {k} Bragg disks in the reference, the lattice fit needs at least 3")
    if k > MAX_DISKS:
        raise UserError(f"centroid core: {k} Bragg disks in the reference, at most {MAX_DISKS}")
    if np.linalg.matrix_rank(core.design()) < 3:
        raise UserError("centroid core: the reference Bragg disks lie on one line; a 2-D lattice needs two directions")
    outside = (core.disks < 0) | (core.disks > size - 1)
    if outside.any():
        r, c = core.disks[outside.any(1)][0]
        raise UserError(f"centroid core: reference disk at ({r:.1f}, {c:.1f}) lies outside the {size}x{size} frame")
    if core.box % 2 == 0 or not 1 <= core.box <= size:
        raise UserError(f"centroid core: box {core.box} must be odd and at most the frame's {size} pixels")
    if not 0 < core.inner < core.ring:
        raise UserError(f"centroid core: window radii inner {core.inner} and ring {core.ring} need 0 < inner < ring")
    empty = [i for i in range(k) if not (core.sectors() == i + 1).any()]
    if empty:
        r, c = core.disks[empty[0]]
        raise UserError(f"centroid core: reference disk at ({r:.1f}, {c:.1f}) has no search window on the frame "
                        f"(a {core.box}-pixel box within {core.search:.1f} px)")
    if max(core.widths().values()) > 62:
        raise UserError(f"centroid core: {max(core.widths().values())}-bit intermediates (at most 62): "
                        f"{core.sum_bits}-bit counts and this window are too wide")


def fit_core(mean_pattern: np.ndarray, sum_bits: int, measured: dict | None = None) -> CoreParams:
    """Reference disks from the mean of the training cube's binned, cropped patterns (no labels), the
    way the preprocessing measures it (ccstae/model/measure.py): its radial background removed, the
    local maxima beyond the central disk with at least MIN_SHARE of the strongest, each at the
    centroid of its disk. measured: preprocess.json's `measured` (its disk radius and centre win)."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    from ccstae.model.measure import background_image, measure_central_disk

    mean = np.asarray(mean_pattern, np.float64)
    size = mean.shape[-1]
    disk = measure_central_disk(mean)
    centre = tuple(measured["central_disk_centre"]) if measured else tuple(disk["centre"])
    radius = float(measured.get("disk_radius", disk["radius"])) if measured else float(disk["radius"])
    mask_radius = float(measured["central_mask_radius"]) if measured else disk["mask_radius"]
    residual = np.maximum(mean - background_image(size, centre, disk["background"]), 0)
    rows, cols = np.mgrid[:size, :size]
    smooth = gaussian_filter(residual, max(1.0, radius / 2))
    beyond = np.hypot(rows - centre[0], cols - centre[1]) > mask_radius + radius
    if not (beyond.any() and smooth[beyond].max() > 0):
        raise UserError("centroid core: no Bragg disks beyond the central disk in the mean training pattern")
    peak = (smooth == maximum_filter(smooth, 2 * int(math.ceil(radius + 1)) + 1)) & beyond
    peak &= smooth >= MIN_SHARE * smooth[beyond].max()
    # Only disks that stay whole on the frame whatever the lattice's rotation (inside the circle the
    # frame's edges touch): a disk the edge cuts has a biased centroid.
    edge = min(centre[0], centre[1], size - 1 - centre[0], size - 1 - centre[1])
    peak &= np.hypot(rows - centre[0], cols - centre[1]) + radius <= edge + 0.5
    disks = []
    for r0, c0 in np.argwhere(peak):
        inside = np.hypot(rows - r0, cols - c0) <= radius + 1
        w = residual * inside
        disks.append(((w * rows).sum() / w.sum(), (w * cols).sum() / w.sum()))
    disks, others = lattice(np.array(disks).reshape(-1, 2), centre, size, radius)
    everything = np.vstack([disks, [centre]])
    gaps = np.hypot(*(everything[:, None] - everything[None]).transpose(2, 0, 1))
    np.fill_diagonal(gaps, np.inf)
    return CoreParams(size=size, sum_bits=int(sum_bits), centre=centre, disks=disks, others=others,
                      box=2 * max(1, int(round(radius))) + 1, inner=radius + 1.5, ring=radius + 2.5,
                      search=SEARCH * float(gaps.min()) if len(disks) else 1.0)


def lattice(peaks: np.ndarray, centre, size: int, radius: float) -> tuple:
    """The peaks put on one lattice: indexed on the two shortest non-collinear peak vectors, the
    basis refitted to all of them by least squares, each peak moved to its lattice point. The mean of
    a sample of rotated patterns smears each disk into an arc, by shell and unevenly; a reference
    that is not one lattice would tilt the sectors of one shell against another's. Returns the
    peaks' lattice points and the other lattice points within a disk radius of the frame."""
    g = peaks - np.asarray(centre)
    none = np.zeros((0, 2))
    if len(g) < 3:
        return peaks, none
    g = g[np.argsort(np.hypot(*g.T), kind="stable")]
    a = g[0]
    cross = np.abs(a[0] * g[:, 1] - a[1] * g[:, 0]) / (np.hypot(*a) * np.hypot(*g.T))
    if not (cross > 0.5).any():
        return peaks, none  # one line: check() refuses it
    basis = np.column_stack([a, g[np.argmax(cross > 0.5)]])  # columns: the two basis vectors
    index = np.rint(np.linalg.solve(basis, g.T).T)
    basis_t, *_ = np.linalg.lstsq(index, g, rcond=None)
    reach = int(np.ceil(2 * size / min(np.hypot(*basis_t.T)))) + 1
    every = np.stack(np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1)), -1).reshape(-1, 2)
    points = every @ basis_t + np.asarray(centre)
    near = np.all((points > -radius) & (points < size - 1 + radius), 1)
    known = {tuple(i) for i in index.astype(int).tolist()} | {(0, 0)}
    others = points[near & np.array([tuple(i) not in known for i in every.tolist()])]
    return index @ basis_t + np.asarray(centre), others


# ----------------------------------------------------------------------------- the integer reference

def _fits(name: str, v: np.ndarray, bits: int, signed: bool = True) -> None:
    """The C++ width of an intermediate holds every value (else the firmware would wrap)."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise OverflowError(f"centroid core: {name} needs more than its {bits} bits ({v.min()} .. {v.max()})")


def box_sums(n: np.ndarray, box: int) -> np.ndarray:
    """(N, H, W) -> (N, H-box+1, W-box+1): the box x box sums, [i, j] the box centred at (i+h, j+h)."""
    c = np.zeros((n.shape[0], n.shape[1] + 1, n.shape[2] + 1), np.int64)
    c[:, 1:, 1:] = n.cumsum(1).cumsum(2)
    return c[:, box:, box:] - c[:, :-box, box:] - c[:, box:, :-box] + c[:, :-box, :-box]


def window_centres(core: CoreParams, n: np.ndarray) -> np.ndarray:
    """(N, K, 2) integer (row, col) window centres: each sector's first largest box sum."""
    h, size = core.half, core.size
    flat = box_sums(n, core.box).reshape(len(n), -1)
    _fits("box sum", flat, core.widths()["box"], signed=False)
    sectors = core.sectors()
    out = np.empty((len(n), len(core.disks), 2), np.int64)
    for k in range(len(core.disks)):
        r, c = np.nonzero(sectors == k + 1)  # raster order
        best = flat[:, (r - h) * (size - 2 * h) + (c - h)].argmax(1)  # the first largest, as the C++'s strict >
        out[:, k] = np.column_stack([r[best], c[best]])
    return out


def window_sums(core: CoreParams, n: np.ndarray, centres: np.ndarray) -> dict:
    """The window's integer sums per pattern and disk (N, K): S, SX, SY, NI, XI, YI, B, NB."""
    off = core.offsets()
    dy, dx, kind = off[:, 0], off[:, 1], off[:, 2]
    rows, cols = centres[..., 0:1] + dy, centres[..., 1:2] + dx  # (N, K, M)
    on = (rows >= 0) & (rows < core.size) & (cols >= 0) & (cols < core.size)
    v = np.where(on, n[np.arange(len(n))[:, None, None], np.clip(rows, 0, core.size - 1),
                       np.clip(cols, 0, core.size - 1)], 0)
    inner, ring = on & (kind == 1), on & (kind == 2)
    return {"S": (v * inner).sum(-1), "SX": (v * inner * dx).sum(-1), "SY": (v * inner * dy).sum(-1),
            "NI": inner.sum(-1), "XI": (inner * dx).sum(-1), "YI": (inner * dy).sum(-1),
            "B": (v * ring).sum(-1), "NB": ring.sum(-1)}


def core_outputs(core: CoreParams, binned: np.ndarray) -> np.ndarray:
    """(N, H, W) binned, cropped, masked integer counts (preprocess.bin_counts) -> (N, 6) int64 outputs
    in 2^-OUT_F (OUTPUTS), bit for bit the firmware's."""
    n = np.asarray(binned)
    if not np.issubdtype(n.dtype, np.integer) or n.shape[1:] != (core.size, core.size):
        raise ValueError(f"the core takes integer {core.size}x{core.size} frames, got {n.dtype} {n.shape[1:]}")
    n = n.astype(np.int64)
    _fits("binned count", n, core.sum_bits, signed=False)
    w, f = core.widths(), core.frac_bits
    centres = window_centres(core, n)
    s = window_sums(core, n, centres)
    no_ring = s["NB"] == 0  # the ring off the frame: no background subtracted
    nb, b = np.where(no_ring, 1, s["NB"]), np.where(no_ring, 0, s["B"])
    for key in ("S", "B", "NI", "NB"):
        _fits(key, s[key], w[key.lower()], signed=False)
    for key in ("SX", "SY"):
        _fits(key, s[key], w["sx"])
    den = nb * s["S"] - b * s["NI"]
    _fits("den", den, w["den"])
    q = core.reach << f
    offs = []
    for axis in ("X", "Y"):
        num = nb * s["S" + axis] - b * s[axis + "I"]
        _fits("num", num, w["num"])
        good = den > 0
        quotient = np.sign(num) * ((np.abs(num) << f) // np.where(good, den, 1))  # C++ '/': towards zero
        offs.append(np.where(good, np.clip(quotient, -q, q), 0))
    cy, cx = core.centre_fixed()
    px = (centres[..., 1] << f) - cx + offs[0]
    py = (centres[..., 0] << f) - cy + offs[1]
    _fits("position", np.concatenate([px, py]), w["pos"])
    p = core.pinv()
    acc_x, acc_y = px @ p.T, py @ p.T  # (N, 3): [c, A_.x, A_.y]
    _fits("fit accumulator", np.concatenate([acc_x, acc_y]), w["acc"])
    acc = np.column_stack([acc_x[:, 1], acc_x[:, 2], acc_y[:, 1], acc_y[:, 2], acc_x[:, 0], acc_y[:, 0]])
    shift = w["shift"]
    return (acc + (1 << (shift - 1))) >> shift  # round half up (>> of a negative: floor, as ap_int's)


def core_matrices(core: CoreParams, raw: np.ndarray) -> np.ndarray:
    """(N, 6) outputs -> (N, 2, 2) float64 matrices M, pattern = M reference (the encoder's)."""
    return np.asarray(raw, np.float64)[:, :4].reshape(-1, 2, 2) / 2.0 ** core.out_frac


def float_matrices(core: CoreParams, binned: np.ndarray) -> np.ndarray:
    """The same windows in floating point (exact divides, the exact pseudo-inverse): the Python
    disk-centroid method the integer core rounds; (N, 2, 2)."""
    n = np.asarray(binned).astype(np.int64)
    centres = window_centres(core, n)
    s = {k: v.astype(np.float64) for k, v in window_sums(core, n, centres).items()}
    no_ring = s["NB"] == 0
    nb, b = np.where(no_ring, 1, s["NB"]), np.where(no_ring, 0, s["B"])
    den = nb * s["S"] - b * s["NI"]
    good = den > 0
    off = [np.where(good, np.clip((nb * s["S" + a] - b * s[a + "I"]) / np.where(good, den, 1), -core.reach,
                                  core.reach), 0) for a in ("X", "Y")]
    px = centres[..., 1] + off[0] - core.centre[1]
    py = centres[..., 0] + off[1] - core.centre[0]
    p = np.linalg.pinv(core.design())
    ax, ay = px @ p.T, py @ p.T
    return np.stack([ax[:, 1:], ay[:, 1:]], 1)
