"""The layout prior (synth.layout): FaceSynth label maps drawn to have the attributes asked for."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from faceweave.conditions import NUM_CLASSES
from faceweave.data.unified import facesynth_seed
from faceweave.errors import FaceweaveError
from faceweave.synth import render
from faceweave.synth.face import Painter
from faceweave.synth.layout import (
    LAYOUT_ATTRIBUTES,
    PAINT_ONLY,
    _generator,
    draw_layout,
)
from faceweave.synth.params import FACESYNTH_ATTRIBUTES, sample_params


def test_layout_has_the_attributes_asked_for_and_is_reproducible():
    asked = {"Eyeglasses": 1, "Wearing_Hat": 1, "Male": 0, "Smiling": 1, "Blond_Hair": 1}
    a = draw_layout(asked, seed=7, size=32)
    assert a.mask.shape == (32, 32) and a.mask.dtype == np.uint8 and a.mask.max() < NUM_CLASSES
    assert a.matched == ["Blond_Hair", "Eyeglasses", "Male", "Smiling", "Wearing_Hat"] and a.unmatched == []
    assert a.free == [] and a.describe()["match"] == "all"
    person = sample_params(_generator(7, a.draw))["attributes"]
    assert all(person[k] == v for k, v in asked.items())
    assert (a.mask == 3).any() and (a.mask == 14).any()  # eyeglasses and hat classes are in the map
    b = draw_layout(asked, seed=7, size=32)
    assert b.draw == a.draw and np.array_equal(a.mask, b.mask)
    others = [draw_layout(asked, seed=s, size=32).mask for s in (8, 9)]
    assert not any(np.array_equal(a.mask, m) for m in others)
    no_glasses = draw_layout({"Eyeglasses": 0, "Wearing_Hat": 0}, seed=7, size=32)
    assert not (no_glasses.mask == 3).any() and not (no_glasses.mask == 14).any()


def test_paint_only_attributes_are_matched_unless_match_is_layout():
    """Hair colour does not shape a label map, but it rules some out: FaceSynth never gives a
    bald man blond hair, so match="all" (the default) never draws a bald layout for "blond",
    while match="layout" (the older prior) leaves hair colour free and sometimes does."""
    asked = {"Male": 1, "Blond_Hair": 1, "5_o_Clock_Shadow": 1}
    bald = {"all": 0, "layout": 0}
    for seed in range(40):
        for match in bald:
            lay = draw_layout(asked, seed=seed, size=32, match=match)
            person = sample_params(_generator(seed, lay.draw))["attributes"]
            bald[match] += person["Bald"]
            if match == "all":
                assert lay.matched == sorted(asked) and lay.free == []
                assert person["Blond_Hair"] == 1 and person["5_o_Clock_Shadow"] == 1 and person["No_Beard"] == 1
            else:
                assert lay.matched == ["Male"] and lay.free == ["5_o_Clock_Shadow", "Blond_Hair"]
                assert lay.describe()["match"] == "layout"
    assert bald["all"] == 0 and bald["layout"] > 0


def test_paint_only_attributes_never_change_a_label_map():
    """The attributes the layout leaves free are those the renderer only paints: flipping one
    in a person's parameters leaves the label map as it was, while some layout attribute
    does change it (so the check can fail)."""
    changed = set()
    for j in range(12):
        params = sample_params(_generator(3, j))

        def label(p, j=j):
            rng = _generator(3, j)
            sample_params(rng)                           # the rng where render() would be
            painter = Painter(p, 32, rng)
            painter.paint()
            return painter.cv.label

        base = label(params)
        for name in sorted(PAINT_ONLY) + ["Wearing_Hat", "Eyeglasses"]:
            flipped = copy.deepcopy(params)
            flipped["attributes"][name] = 1 - flipped["attributes"][name]
            if not np.array_equal(label(flipped), base):
                changed.add(name)
    assert changed == {"Wearing_Hat", "Eyeglasses"}
    assert set(LAYOUT_ATTRIBUTES) | PAINT_ONLY == set(FACESYNTH_ATTRIBUTES)


def test_combination_facesynth_never_draws_uses_the_best_draw():
    lay = draw_layout({"Male": 0, "Goatee": 1, "Eyeglasses": 1, "Attractive": 1}, seed=0, size=32,
                      max_draws=300)
    assert lay.unmatched in (["Goatee"], ["Male"])        # FaceSynth gives goatees to men only
    assert "Eyeglasses" in lay.matched
    assert lay.free == ["Attractive"]                    # not rendered at all
    assert draw_layout({}, seed=0, size=32).draw == 0    # nothing asked: the first draw


def test_layouts_are_not_faces_of_the_data_splits():
    drawn = [draw_layout({}, seed=s, size=32).mask for s in range(3)]
    for split in ("train", "val", "test"):
        for i in range(3):
            assert not any(np.array_equal(render(facesynth_seed(split), i, 32, captions=0).mask, m) for m in drawn)


@pytest.mark.parametrize("kw, message", [
    ({"seed": -1}, "non-negative"), ({"seed": 1.5}, "non-negative"), ({"seed": True}, "non-negative"),
    ({"max_draws": 0}, "positive"), ({"size": 16}, "size"), ({"match": "paint"}, "match must be"),
])
def test_bad_arguments_are_one_line_errors(kw, message):
    args = {"attributes": {"Male": 1}, "seed": 0, "size": 32, **kw}
    with pytest.raises(FaceweaveError, match=message) as err:
        draw_layout(**args)
    assert "\n" not in str(err.value)
