"""Base models: the family table (families.py), loading (basemodel.py), devices, tiny models, text conditioning."""
