"""QGIS-side glue: tasks, layer reading and writing, styles. May import QGIS; core may not."""
