"""The main job on a public sample plot: detect crowns, score them against the hand-drawn ones, draw both.

Usage: scripts/run-sample.sh [OUTPUT_FOLDER]   (default: ./output)

The plot is OSBS_029 (NEON, Florida longleaf pine, 10 cm, georeferenced) from the deepforest
wheel's sample data, which scripts/setup.sh unpacks into build/samples/. The bundled model never
trained on it. Everything runs through the plugin's own Processing algorithms, as a user would:
treecrowns:detect, treecrowns:import_annotations for the hand-drawn crowns, treecrowns:evaluate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from treecrowns.gis.headless import start_qgis


def main(output_folder: Path) -> None:
    start_qgis()
    import processing
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from treecrowns.core.sample_data import GEOREFERENCED_PLOT, SampleDataMissingError, sample_plot
    from treecrowns.gis.rendering import render_png
    from treecrowns.gis.resources import EVALUATION_STYLE

    try:
        plot = sample_plot(GEOREFERENCED_PLOT)
    except SampleDataMissingError as exc:
        raise SystemExit(str(exc)) from exc
    output_folder.mkdir(parents=True, exist_ok=True)
    crowns = output_folder / "sample_crowns.gpkg"
    hand_drawn = output_folder / "sample_hand_drawn_crowns.gpkg"
    outcome = output_folder / "sample_outcome.gpkg"
    png = output_folder / "sample_crowns.png"
    for old in (crowns, hand_drawn, outcome):
        old.unlink(missing_ok=True)

    detected = processing.run("treecrowns:detect", {"INPUT": str(plot.image), "OUTPUT": str(crowns)})
    processing.run("treecrowns:import_annotations", {"ANNOTATIONS": str(plot.image.with_suffix(".xml")),
                                                     "RASTER": str(plot.image), "OUTPUT": str(hand_drawn)})
    scored = processing.run("treecrowns:evaluate", {"PREDICTIONS": str(crowns), "GROUND_TRUTH": str(hand_drawn),
                                                    "OUTPUT": str(outcome)})

    outcome_layer = QgsVectorLayer(str(outcome), "found, missed and false crowns")
    outcome_layer.loadNamedStyle(str(EVALUATION_STYLE))
    render_png([outcome_layer, QgsRasterLayer(str(plot.image), plot.name)], png)

    print(f"sample plot:  {plot.name} (NEON, {len(plot.crowns.boxes)} hand-drawn crowns; the model never trained on it)")
    print(f"crowns found: {int(detected['CROWN_COUNT'])}")
    print(f"precision {scored['PRECISION']:.2f}, recall {scored['RECALL']:.2f}, F1 {scored['F1']:.2f} "
          "(a found crown counts when it overlaps a hand-drawn one at IoU 0.4)")
    print(f"GeoPackage:   {crowns.resolve()}")
    print(f"map image:    {png.resolve()}  (green: found, orange: false, magenta: missed)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("output"))
