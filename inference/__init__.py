"""Similarity queries on a model bundle, reports and the web app (not built yet)."""
