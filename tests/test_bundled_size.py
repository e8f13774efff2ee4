"""The bundled models' size budget: they ship in the repository and the wheel, so together
they stay within BUDGET_MIB (docs/models.md, "Storage": int8 storage halves a model)."""
from __future__ import annotations

from faceweave import checkpoint

BUDGET_MIB = 56


def test_bundled_models_fit_the_budget():
    root = checkpoint.bundled_dir()
    sizes = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
             for d in sorted(root.iterdir()) if d.is_dir()}
    total = sum(sizes.values()) / 2**20
    listing = ", ".join(f"{n} {s / 2**20:.1f}" for n, s in sorted(sizes.items(), key=lambda kv: -kv[1]))
    assert total <= BUDGET_MIB, (
        f"the bundled models take {total:.1f} MiB, over the {BUDGET_MIB} MiB budget (MiB: {listing}); "
        "store them as int8 (scripts/requantize.py, measured as in docs/models.md) or drop one")
