"""Training data: one image (images.py), a dataset and its report (dataset.py), aspect buckets."""
