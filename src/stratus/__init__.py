"""Stratus: a self-hosted cloud for the machine-learning lifecycle.

The public SDK lives here: `stratus.Client` and the error classes it raises.
"""

from __future__ import annotations

__version__ = "0.1.0"
