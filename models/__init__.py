"""Keras backbones and heads for author, genre and style-embedding models.

Importing this package loads nothing heavy; `models.registry` and the model
modules import Keras when used.
"""
