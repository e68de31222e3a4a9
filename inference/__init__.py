"""Similarity queries on a model bundle: `find_similar`, the `similar` CLI, reports and the web app.

The query path (bundle, runner, search, query) needs only numpy, Pillow and LiteRT;
TensorFlow is imported only when a bundle has no LiteRT files. Genres from a synopsis
(text_genres, genres) add numpy-only text features and the sentence encoder, never scikit-learn.
"""
