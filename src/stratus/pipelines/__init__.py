"""Pipelines: declarative steps from data to a rolled-out endpoint, their runs and triggers."""
