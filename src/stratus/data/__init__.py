"""Datasets: immutable, content-addressed versions of tabular data, with schemas and profiles."""
