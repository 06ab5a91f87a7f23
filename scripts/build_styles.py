"""Regenerate the QML styles in resources/styles/ with QGIS's own renderer classes.

Run with QGIS's Python: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/build_styles.py
"""

import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsRendererCategory,
    QgsRuleBasedRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

REPO = Path(__file__).resolve().parents[1]
STYLES = REPO / "resources" / "styles"
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.gis.review import STATUS_PREDICTED  # noqa: E402  (QGIS only, no torch: runs under QGIS's Python)


def outline(colour: str, width: float = 0.6) -> QgsFillSymbol:
    return QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "style": "no", "outline_color": colour, "outline_width": str(width), "outline_width_unit": "MM"}
    )


# A crown not yet looked at in review; every other status (confirmed, added, edited) is a person's work.
_PREDICTED = f"coalesce(\"status\", '{STATUS_PREDICTED}') = '{STATUS_PREDICTED}'"
REVIEWED_COLOUR = "#2c7bb6"


def crowns_style() -> None:
    """Predicted crowns outlined by score, red (doubtful) through yellow to green (confident);
    crowns confirmed, added or edited in review outlined thick and blue, so the work done shows."""
    layer = QgsVectorLayer("Polygon?field=score:double&field=label:string&field=status:string", "crowns", "memory")
    root = QgsRuleBasedRenderer.Rule(None)
    root.appendChild(QgsRuleBasedRenderer.Rule(
        outline(REVIEWED_COLOUR, 0.9), filterExp=f"NOT ({_PREDICTED})", label="reviewed (confirmed, added or edited)"
    ))
    ramp = QgsGradientColorRamp(QColor("#d7191c"), QColor("#1a9641"))
    bounds = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0001]
    for i, (low, high) in enumerate(zip(bounds, bounds[1:])):
        colour = ramp.color(i / (len(bounds) - 2)).name()
        root.appendChild(QgsRuleBasedRenderer.Rule(
            outline(colour), filterExp=f'{_PREDICTED} AND "score" >= {low} AND "score" < {high}',
            label=f"score {low:.1f} – {min(high, 1.0):.1f}",
        ))
    root.appendChild(QgsRuleBasedRenderer.Rule(outline("#7f7f7f"), filterExp="ELSE", label="no score"))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.saveNamedStyle(str(STYLES / "crowns.qml"))


def evaluation_style() -> None:
    """True positives green, false positives orange, missed crowns magenta."""
    layer = QgsVectorLayer("Polygon?field=outcome:string&field=iou:double", "evaluation", "memory")
    categories = [
        QgsRendererCategory("true positive", outline("#1a9641", 0.7), "true positive"),
        QgsRendererCategory("false positive", outline("#fd8d3c", 0.7), "false positive"),
        QgsRendererCategory("missed", outline("#d01c8b", 0.9), "missed crown"),
    ]
    layer.setRenderer(QgsCategorizedSymbolRenderer("outcome", categories))
    layer.saveNamedStyle(str(STYLES / "evaluation.qml"))


def reviewed_areas_style() -> None:
    """Reviewed areas: a light yellow wash with a dashed yellow outline, under the crowns."""
    layer = QgsVectorLayer("Polygon?field=reviewed:string", "reviewed areas", "memory")
    symbol = QgsFillSymbol.createSimple(
        {"color": "255,213,0,40", "outline_color": "#ffd500", "outline_width": "0.8", "outline_style": "dash"}
    )
    layer.renderer().setSymbol(symbol)
    layer.saveNamedStyle(str(STYLES / "reviewed_areas.qml"))


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    STYLES.mkdir(parents=True, exist_ok=True)
    crowns_style()
    evaluation_style()
    reviewed_areas_style()
    app.exitQgis()
