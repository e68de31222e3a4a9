"""Training, evaluation against baselines, and model-bundle export."""
