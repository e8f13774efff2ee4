"""What the copy baseline takes in `faceweave evaluate` (backends/options.py)."""
from __future__ import annotations

from ..options import Option

EVALUATE = (
    Option("bank_size", "--bank-size", "int", 1000, "Training faces to pick from  [default: 1000]"),
)
