"""The main job on the bundled sample: detect crowns with treecrowns:detect, write a GeoPackage, render a PNG.

Usage: scripts/run-sample.sh [OUTPUT_FOLDER]   (default: ./output)
"""

from __future__ import annotations

import sys
from pathlib import Path

from treecrowns.gis.headless import start_qgis


def main(output_folder: Path) -> None:
    start_qgis()
    import processing
    from qgis.core import QgsRasterLayer

    from treecrowns.gis.layers import open_crowns_layer
    from treecrowns.gis.rendering import render_png
    from treecrowns.gis.resources import SAMPLE_RASTER

    output_folder.mkdir(parents=True, exist_ok=True)
    gpkg = output_folder / "sample_crowns.gpkg"
    png = output_folder / "sample_crowns.png"
    gpkg.unlink(missing_ok=True)
    result = processing.run("treecrowns:detect", {"INPUT": str(SAMPLE_RASTER), "OUTPUT": str(gpkg)})
    raster = QgsRasterLayer(str(SAMPLE_RASTER), "sample orthophoto")
    crowns = open_crowns_layer(gpkg, "crowns")
    render_png([crowns, raster], png)
    print(f"crowns found: {int(result['CROWN_COUNT'])}")
    print(f"GeoPackage:   {gpkg.resolve()}")
    print(f"map image:    {png.resolve()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("output"))
