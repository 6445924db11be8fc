"""Datasets: source adapters, the preprocessing cache, and per-epoch samplers."""
