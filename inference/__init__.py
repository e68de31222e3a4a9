"""Similarity queries on a model bundle, reports and the web app.

Ready: the bundle format (`inference.bundle`) and the LiteRT runner
(`inference.litert_model`), both free of TensorFlow. The query CLI, reports
and web app are still to come.
"""
