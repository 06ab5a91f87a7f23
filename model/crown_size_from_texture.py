"""Can a plot's crown size be told from its pixels alone, to choose the scale it is read at?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/crown_size_from_texture.py

Fold 4's small crowns are found twice as well read at 0.1 m as at 0.2 m, and every other fold
loses half its F1 there (model card, "Fold 4"); pickers built on the detector's own scores chose
badly. This asks whether the image itself tells small crowns from large ones, with no detector:
each plot's brightness, read at 0.2 m and standardised, is filtered with a scale-normalised
Laplacian of Gaussian at sigmas from 0.3 to 4 m; the mean bright-blob response at each sigma is a
texture spectrum whose peak, and whose log-weighted centre, would estimate the crown radius.
Prints per site the median labelled crown (square root of the box area, metres), the median
peak sigma and centre, the spectrum at every other sigma, and the correlation over all plots of
the estimate's logarithm with the labelled size's.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plots import read_all_plots  # noqa: E402

RESOLUTION_M = 0.2
SIGMAS_M = np.geomspace(0.3, 4.0, 24)


def brightness_at_model_resolution(path: str, pixel_size_m: float) -> np.ndarray:
    with rasterio.open(path) as src:
        image = src.read(indexes=[1, 2, 3]).astype(float)
    brightness = ndimage.zoom(image.mean(axis=0), pixel_size_m / RESOLUTION_M, order=1)
    return (brightness - brightness.mean()) / (brightness.std() + 1e-6)


def blob_spectrum(brightness: np.ndarray) -> np.ndarray:
    """Mean bright-blob response at each of SIGMAS_M (scale-normalised, so sizes compare)."""
    spectrum = []
    for sigma_m in SIGMAS_M:
        sigma = sigma_m / RESOLUTION_M
        response = -sigma**2 * ndimage.gaussian_laplace(brightness, sigma)
        spectrum.append(np.maximum(response, 0).mean())
    return np.array(spectrum)


def main() -> None:
    by_site: dict[str, list[tuple[float, float, float, np.ndarray]]] = defaultdict(list)
    for plot in read_all_plots():
        boxes = plot.crowns.boxes
        if not len(boxes):
            continue
        with rasterio.open(plot.crowns.image_path) as src:
            pixel_size = plot.crowns.pixel_size_m or float(src.res[0])
        labelled = float(np.median(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))) * pixel_size
        spectrum = blob_spectrum(brightness_at_model_resolution(plot.crowns.image_path, pixel_size))
        weights = spectrum / spectrum.sum()
        centre = float(np.exp((weights * np.log(SIGMAS_M)).sum()))
        by_site[plot.site].append((labelled, float(SIGMAS_M[spectrum.argmax()]), centre, spectrum / spectrum.max()))

    print("site  plots crown m  peak m  centre m  spectrum at sigma " + " ".join(f"{s:4.1f}" for s in SIGMAS_M[::2]))
    for site, rows in sorted(by_site.items(), key=lambda item: np.median([r[0] for r in item[1]])):
        labelled, peak, centre = (np.median([r[i] for r in rows]) for i in range(3))
        spectrum = np.median([r[3] for r in rows], axis=0)
        print(f"{site:5s} {len(rows):5d} {labelled:7.2f} {peak:7.2f} {centre:9.2f}  {'':17s} "
              + " ".join(f"{v:4.2f}" for v in spectrum[::2]))
    rows = [r for site_rows in by_site.values() for r in site_rows]
    for name, column in (("peak", 1), ("centre", 2)):
        r = np.corrcoef(np.log([x[column] for x in rows]), np.log([x[0] for x in rows]))[0, 1]
        print(f"correlation of log {name} with log labelled crown over {len(rows)} plots: {r:.2f}")


if __name__ == "__main__":
    main()
