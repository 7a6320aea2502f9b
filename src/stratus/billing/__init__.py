"""Billing: meters, the price catalog, cost reports (docs/cost.md)."""
