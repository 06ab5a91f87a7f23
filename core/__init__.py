"""The detection engine: pure Python (torch, torchvision, numpy, rasterio, shapely), no QGIS or Qt."""
