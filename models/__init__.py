"""Keras backbones and heads for author, genre and style-embedding models (not built yet)."""
