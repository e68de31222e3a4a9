"""Data layer: the catalog, imports, the clean-image loader and leak-free splits."""
