"""Offscreen QGIS for the tests in this folder: one application per test session."""

from __future__ import annotations

import sys

import pytest

sys.path.append("/usr/share/qgis/python/plugins")  # QGIS's own Processing package


@pytest.fixture(scope="session", autouse=True)
def qgis_app():
    from treecrowns.gis.headless import start_qgis

    return start_qgis()
