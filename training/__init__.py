"""Training, evaluation against baselines, and model-bundle export (not built yet)."""
