"""Experiment tracking: the only package that imports mlflow (write.py logs runs, read.py loads them)."""
