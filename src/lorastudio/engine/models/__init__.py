"""Base models: the family table (families.py), loading (base.py), devices, tiny models, text conditioning."""
