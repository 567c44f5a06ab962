"""A cube at a glance (`ccstae inspect`): its recorded calibration, a text summary, the central
disk, virtual bright- and dark-field images and a PNG overview."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstae.core.data_io import GT_MAPS, Cube
from ccstae.core.outputs import save_figure


def calibration(cube: Cube) -> dict:
    """The calibrations a cube's file records: scan_step_A (Rx step, Angstrom), k_px_inv_A
    (reciprocal pixel size, 1/Angstrom) and beam_energy_kv, those present (simulated cubes and
    camera files use the same names; ccstae/core/readers.py)."""
    a = cube.attrs
    found = {"scan_step_A": a.get("scan_step_A"), "k_px_inv_A": a.get("k_px_inv_A"),
             "beam_energy_kv": a.get("beam_energy_kv", a.get("simulate.beam_energy_kv"))}
    return {k: float(v) for k, v in found.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summary(cube: Cube) -> str:
    """A few lines describing a cube: shape, dtype, attributes, ground truth."""
    lines = [f"file:         {cube.path}",
             f"format:       {cube.format}",
             f"detector:     {cube.detector}"]
    if cube.dataset_name:
        lines.append(f"dataset:      {cube.dataset_name}")
    lines += [f"shape:        {cube.shape}  (Rx, Ry, Qx, Qy)",
              f"dtype:        {cube.dtype}",
              f"patterns:     {len(cube)}"]
    cal = calibration(cube)
    known = [f"{label} {cal[k]:.4g} {unit}" for k, label, unit in (
        ("scan_step_A", "scan step", "A"), ("k_px_inv_A", "reciprocal pixel", "1/A"),
        ("beam_energy_kv", "beam", "kV")) if k in cal]
    lines.append(f"calibration:  {', '.join(known) if known else 'none recorded (pixels)'}")
    lines += [f"note:         {n}" for n in cube.notes]
    if cube.ground_truth:
        maps = ", ".join(f"{k} [{np.min(v):.4g}, {np.max(v):.4g}]" for k, v in sorted(cube.ground_truth.items()))
        lines.append(f"ground truth: {maps}")
    else:
        lines.append("ground truth: none")
    if cube.attrs:
        lines.append("attributes:")
        for k, v in sorted(cube.attrs.items()):
            text = str(v)
            lines.append(f"  {k} = " + (text if len(text) <= 100 else f"<{len(text)} chars>"))
    return "\n".join(lines)


def central_disk(mean_pattern: np.ndarray):
    """(row, col, radius) of the bright central disk: the half-maximum blob holding the maximum."""
    from scipy import ndimage

    img = ndimage.gaussian_filter(np.asarray(mean_pattern, np.float64), 0.7)
    labels, _ = ndimage.label(img >= 0.5 * img.max())
    blob = labels == labels[np.unravel_index(np.argmax(img), img.shape)]
    row, col = ndimage.center_of_mass(blob)
    return float(row), float(col), float(np.sqrt(blob.sum() / np.pi))


def virtual_images(cube: Cube, batch_size: int = 1024, progress: bool = False, n_mean: int = 512):
    """Virtual bright-field and annular dark-field images (Rx, Ry), streamed over the cube.

    Masks come from the data: the central disk (found on the mean of a random sample) is the
    bright field, the annulus from twice its radius to the detector edge the dark field.
    Returns (bf, adf, info) with info = {row, col, radius, adf_inner, adf_outer}.
    """
    from tqdm import tqdm

    mean = cube.sample(n_mean, np.random.default_rng(0)).mean(axis=0)
    row, col, radius = central_disk(mean)
    qx, qy = cube.shape[2:]
    rr, cc = np.mgrid[:qx, :qy]
    r = np.hypot(rr - row, cc - col)
    inner, outer = 2 * radius, 0.48 * min(qx, qy)
    bf_mask, adf_mask = (r <= radius + 0.5).astype(np.float32), ((r >= inner) & (r <= outer)).astype(np.float32)
    bf, adf = np.zeros(len(cube), np.float64), np.zeros(len(cube), np.float64)
    with tqdm(total=len(cube), disable=not progress, desc="virtual images", unit="pattern", dynamic_ncols=True) as bar:
        for start, batch in cube.iter_batches(batch_size):
            bf[start:start + len(batch)] = np.einsum("nij,ij->n", batch, bf_mask)
            adf[start:start + len(batch)] = np.einsum("nij,ij->n", batch, adf_mask)
            bar.update(len(batch))
    info = {"row": row, "col": col, "radius": radius, "adf_inner": inner, "adf_outer": outer}
    return bf.reshape(cube.shape[:2]), adf.reshape(cube.shape[:2]), info


def save_overview_png(cube: Cube, out_path, progress: bool = False) -> Path:
    """PNG overview, written atomically: 4 patterns (sqrt scale), virtual BF / ADF, ground truth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    bf, adf, info = virtual_images(cube, progress=progress)
    n = len(cube)
    index = np.unique(np.linspace(0, n - 1, 4).astype(np.int64))
    patterns = cube.read_patterns(index)
    gt = cube.ground_truth or {}
    maps = [k for k in GT_MAPS if k in gt]
    ncols = max(len(index), 2, len(maps))
    nrows = 3 if maps else 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ry = cube.shape[1]
    for ax, i, p in zip(axes[0], index, patterns):
        ax.imshow(np.sqrt(np.maximum(p, 0)), cmap="inferno")
        ax.set_title(f"pattern ({i // ry}, {i % ry}), sqrt", fontsize=9)
    for ax, img, title in ((axes[1, 0], bf, "virtual BF"), (axes[1, 1], adf, "virtual ADF")):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=9)
    ax = axes[0, 0]
    for rad in (info["radius"] + 0.5, info["adf_inner"], info["adf_outer"]):
        ax.add_patch(Circle((info["col"], info["row"]), rad, fill=False, color="cyan", lw=0.6))
    for ax, k in zip(axes[2] if maps else [], maps):
        img = np.degrees(gt[k]) if k == "theta" else gt[k]
        im = ax.imshow(img, cmap="tab20" if k == "grain" else "RdBu_r")
        ax.set_title(f"{k} (deg)" if k == "theta" else k, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{cube.path.name}  {cube.shape}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_path, dpi=80)
