"""Guidance arithmetic on a toy denoiser whose output is linear in the present modalities."""
from __future__ import annotations

import pytest
import torch

from faceweave.diffusion.guidance import active, check_guidance, guide
from faceweave.errors import FaceweaveError

EFFECT = {"text": 1.0, "mask": 10.0, "sketch": 100.0}


def make_eval(calls):
    def evaluate(x, sigma, subsets):
        calls.append(list(subsets))
        return [x + sum(EFFECT[m] for m in s) for s in subsets]
    return evaluate


def test_float_scale():
    x = torch.zeros(2)
    calls = []
    given = ("text", "mask")
    assert torch.equal(guide(make_eval(calls), x, 1.0, given, 1.0), x + 11)         # no guidance, one pass
    assert len(calls[-1]) == 1
    assert torch.equal(guide(make_eval(calls), x, 1.0, given, 0.0), x)              # unconditional
    assert torch.equal(guide(make_eval(calls), x, 1.0, given, 3.0), x + 33)
    assert len(calls[-1]) == 2                                                        # batched together


def test_per_modality_scales():
    x = torch.zeros(1)
    calls = []
    given = ("text", "mask", "sketch")
    out = guide(make_eval(calls), x, 1.0, given, {"text": 1.0, "mask": 2.0, "sketch": 0.0})
    # cond = 111; mask guided x2 adds 10; sketch at 0 removes its 100.
    assert float(out) == pytest.approx(111 + 10 - 100)
    assert len(calls[-1]) == 3                                                        # text at 1: no extra pass


def test_window():
    assert active(0, 10, (0.0, 0.5)) and not active(9, 10, (0.0, 0.5)) and active(5, 10, None)
    x = torch.zeros(1)
    assert float(guide(make_eval([]), x, 1.0, ("mask",), 5.0, is_active=False)) == 10.0


def test_bad_settings():
    with pytest.raises(FaceweaveError, match="from 0 to"):
        check_guidance(100.0, ["text"])
    with pytest.raises(FaceweaveError, match="from 0 to"):
        check_guidance({"text": -1.0}, ["text"])
    with pytest.raises(FaceweaveError, match="not given"):
        check_guidance({"sketch": 2.0}, ["text"])
    with pytest.raises(FaceweaveError, match="window"):
        check_guidance(2.0, ["text"], (0.8, 0.2))
    check_guidance({"text": 3.0, "mask": 1.5}, ["text", "mask"], (0.0, 0.6))
