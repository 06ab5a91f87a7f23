"""Install the packages Tree crowns needs for QGIS's Python, from a shell (what the dock's Install button does).

    <QGIS's python3> <this folder>/install_packages.py <QGIS profile>/python/treecrowns-packages/pyXY

The message the plugin gives when PyTorch is missing prints this command with the right paths.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # The folder holding this plugin's folder, so that the plugin imports as a package.
    sys.path.insert(0, str(Path(__file__).absolute().parent.parent))
    from treecrowns.gis.dependencies import main

    sys.exit(main())
