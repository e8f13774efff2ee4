"""Sampling the person: attributes with realistic joint frequencies, then the render parameters.

Attributes are drawn first, with the dependencies CelebA shows (beards and baldness on men,
lipstick and earrings mostly on women, grey hair with age, ...). Every render parameter is
then drawn *given* the attributes, so each attribute set to 1 is visibly rendered and each
set to 0 visibly absent: the labels are the ground truth of the picture, not a guess.
Frequencies are rounded from CelebA's published attribute statistics.
"""
from __future__ import annotations

import numpy as np

# The attributes FaceSynth renders (CelebA names). Attractive is not rendered (not visual).
FACESYNTH_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face",
    "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling",
    "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Young",
)

# Skin tones from very light to very dark (linear RGB-ish 0..1 display values).
SKIN_TONES = np.array([
    (0.98, 0.87, 0.80), (0.96, 0.82, 0.70), (0.92, 0.75, 0.62), (0.86, 0.67, 0.52),
    (0.76, 0.56, 0.41), (0.64, 0.45, 0.31), (0.50, 0.34, 0.23), (0.36, 0.24, 0.16),
], np.float32)
SKIN_TONE_NAMES = ("very light", "very light", "light", "light", "medium", "tan", "brown", "dark")
HAIR_COLORS = {  # name -> (base RGB, CelebA attribute or None)
    "black": ((0.06, 0.05, 0.05), "Black_Hair"),
    "dark brown": ((0.23, 0.14, 0.08), "Brown_Hair"),
    "brown": ((0.40, 0.25, 0.14), "Brown_Hair"),
    "blond": ((0.86, 0.72, 0.45), "Blond_Hair"),
    "platinum blond": ((0.93, 0.88, 0.74), "Blond_Hair"),
    "gray": ((0.62, 0.62, 0.62), "Gray_Hair"),
    "white": ((0.88, 0.88, 0.86), "Gray_Hair"),
    "red": ((0.62, 0.22, 0.09), None),
    "auburn": ((0.45, 0.17, 0.08), None),
}
EYE_COLORS = {"brown": (0.36, 0.21, 0.10), "dark brown": (0.20, 0.12, 0.06),
              "blue": (0.30, 0.50, 0.75), "green": (0.33, 0.52, 0.30),
              "gray": (0.50, 0.55, 0.58), "hazel": (0.52, 0.40, 0.18)}
CLOTH_COLORS = {"white": (0.93, 0.93, 0.92), "black": (0.10, 0.10, 0.11), "gray": (0.50, 0.50, 0.52),
                "navy": (0.12, 0.17, 0.35), "blue": (0.25, 0.42, 0.72), "red": (0.72, 0.14, 0.14),
                "green": (0.22, 0.47, 0.30), "beige": (0.80, 0.72, 0.58), "purple": (0.42, 0.24, 0.52),
                "yellow": (0.90, 0.77, 0.28), "pink": (0.90, 0.60, 0.68), "brown": (0.42, 0.28, 0.18)}
LIPSTICK_COLORS = ((0.72, 0.08, 0.14), (0.82, 0.25, 0.35), (0.55, 0.10, 0.20), (0.88, 0.40, 0.45))
HAT_COLORS = ((0.15, 0.15, 0.18), (0.70, 0.15, 0.15), (0.20, 0.30, 0.55), (0.85, 0.80, 0.70),
              (0.35, 0.25, 0.18), (0.25, 0.45, 0.30), (0.90, 0.90, 0.90))


def _pick(rng: np.random.Generator, options, weights=None):
    options = list(options)
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, np.float64)
    return options[int(np.searchsorted(np.cumsum(w / w.sum()), rng.random(), side="right").clip(0, len(options) - 1))]


def sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    """Draw one person's attributes with CelebA-like joint frequencies."""
    u = rng.random
    a: dict[str, int] = {}
    male = u() < 0.42
    young = u() < (0.70 if male else 0.82)
    a["Male"], a["Young"] = int(male), int(young)
    a["Smiling"] = int(u() < 0.48)
    a["Mouth_Slightly_Open"] = int(u() < (0.65 if a["Smiling"] else 0.25))
    a["Bald"] = int(male and u() < (0.03 if young else 0.18))
    a["Wearing_Hat"] = int(not a["Bald"] and u() < 0.06)
    a["Receding_Hairline"] = int(not a["Bald"] and not a["Wearing_Hat"] and u() < (0.05 if young else 0.25))
    # Hair colour (exactly one CelebA colour, or red/auburn which CelebA has no name for).
    if young:
        color = _pick(rng, HAIR_COLORS, (24, 14, 22, 12, 3, 0.5, 0.2, 4, 3))
    else:
        color = _pick(rng, HAIR_COLORS, (16, 12, 14, 6, 2, 22, 12, 1, 1))
    for attr in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"):
        a[attr] = int(not a["Bald"] and HAIR_COLORS[color][1] == attr)
    texture = _pick(rng, ("wavy", "straight", "plain"), (32, 30, 38))
    a["Wavy_Hair"] = int(not a["Bald"] and texture == "wavy")
    a["Straight_Hair"] = int(not a["Bald"] and texture == "straight")
    a["Bangs"] = int(not a["Bald"] and not a["Receding_Hairline"] and u() < (0.08 if male else 0.22))
    beard = male and u() < (0.30 if young else 0.40)
    a["No_Beard"] = int(not beard)
    a["Mustache"] = int(male and u() < (0.55 if beard else 0.04))
    a["Goatee"] = int(male and not beard and u() < 0.10)
    a["Sideburns"] = int(male and not a["Bald"] and u() < (0.40 if beard else 0.06))
    a["5_o_Clock_Shadow"] = int(male and not beard and u() < 0.25)
    a["Wearing_Lipstick"] = int(not male and u() < 0.80)
    a["Heavy_Makeup"] = int(not male and a["Wearing_Lipstick"] and u() < 0.55)
    a["Wearing_Earrings"] = int(u() < (0.03 if male else 0.32))
    a["Wearing_Necklace"] = int(u() < (0.02 if male else 0.20))
    a["Eyeglasses"] = int(u() < (0.06 if young else 0.18))
    a["Bushy_Eyebrows"] = int(u() < (0.28 if male else 0.06))
    a["Arched_Eyebrows"] = int(not a["Bushy_Eyebrows"] and u() < (0.08 if male else 0.42))
    a["Narrow_Eyes"] = int(u() < 0.12)
    a["Bags_Under_Eyes"] = int(u() < (0.12 if young else 0.45))
    a["Big_Nose"] = int(u() < (0.38 if male else 0.12))
    a["Pointy_Nose"] = int(not a["Big_Nose"] and u() < 0.30)
    a["Big_Lips"] = int(u() < 0.24)
    a["Chubby"] = int(u() < (0.06 if young else 0.16))
    a["Double_Chin"] = int(u() < (0.45 if a["Chubby"] else 0.02))
    a["Oval_Face"] = int(not a["Chubby"] and u() < 0.30)
    a["High_Cheekbones"] = int(u() < (0.70 if a["Smiling"] else 0.20))
    a["Rosy_Cheeks"] = int(u() < (0.04 if male else 0.10))
    a["Blurry"] = int(u() < 0.04)
    return {"_hair_color": color, "_hair_texture": texture, **a}


SKIN_TONE_WEIGHTS = (0.04, 0.10, 0.18, 0.20, 0.18, 0.12, 0.10, 0.08)


def sample_person(rng: np.random.Generator) -> dict:
    """Every attribute FaceSynth renders, Pale_Skin included, plus the private keys
    _hair_color, _hair_texture and _skin_tone: the first draws of sample_params, so a caller
    can look at a person before paying for the rest of the render's choices."""
    a = sample_attributes(rng)
    # Pale_Skin is not sampled on its own: it is the lightest tone (as CelebA uses it).
    tone = _pick(rng, range(8), SKIN_TONE_WEIGHTS)
    a["Pale_Skin"] = int(tone == 0)
    a["_skin_tone"] = int(tone)
    return a


def sample_params(rng: np.random.Generator) -> dict:
    """Attributes plus every continuous choice of the render (all plain JSON types)."""
    a = sample_person(rng)
    hair_color, hair_texture, tone = a.pop("_hair_color"), a.pop("_hair_texture"), a.pop("_skin_tone")
    u, n = rng.random, rng.normal
    male = a["Male"]
    skin = SKIN_TONES[tone] + rng.uniform(-0.02, 0.02, 3).astype(np.float32)

    if a["Bald"]:
        style = "bald"
    elif male:
        style = _pick(rng, ("short", "crop", "medium", "long", "curly"), (40, 25, 18, 6, 11))
    else:
        style = _pick(rng, ("long", "medium", "bob", "updo", "curly", "short"), (42, 14, 14, 12, 12, 6))
    if hair_texture == "wavy" and style in ("short", "crop"):
        style = "medium"
    if style == "curly" and not a["Wavy_Hair"]:
        style = "long" if not male else "short"
    if a["Straight_Hair"] and style == "crop":
        style = "short"

    p = {
        "attributes": a,
        "skin_tone": int(tone), "skin_tone_name": SKIN_TONE_NAMES[tone],
        "skin": [float(v) for v in np.clip(skin, 0, 1)],
        "hair_color": hair_color, "hair_texture": hair_texture, "hair_style": style,
        "hair_volume": float(rng.uniform(0.15, 0.32) + (0.12 if style == "curly" else 0.0)),
        "hair_length": float(rng.uniform(1.9, 3.2) if style == "long" else rng.uniform(1.0, 1.4)
                             if style in ("medium", "bob", "curly") else 0.6),
        "hair_part": float(rng.uniform(-0.45, 0.45)) if u() < 0.7 else 0.0,
        "wave_freq": float(rng.uniform(5, 11)), "wave_amp": float(rng.uniform(0.03, 0.07)),
        "ears_tucked": int(a["Wearing_Earrings"] or u() < 0.3),
        "eye_color": _pick(rng, EYE_COLORS, (30, 25, 15, 10, 8, 12)),
        "cloth_color": _pick(rng, CLOTH_COLORS),
        "cloth_style": _pick(rng, ("crew", "vneck", "collar", "scoop", "turtleneck"),
                             (30, 20, 25 if male else 10, 5 if male else 25, 8)),
        "cloth_stripes": int(u() < 0.12),
        "lipstick": list(_pick(rng, LIPSTICK_COLORS)),
        "hat_style": _pick(rng, ("beanie", "cap", "brimmed")),
        "hat_color": list(_pick(rng, HAT_COLORS)),
        "glasses_shape": _pick(rng, ("round", "rect", "aviator")),
        "sunglasses": int(a["Eyeglasses"] and u() < 0.15),
        "earring_style": _pick(rng, ("stud", "hoop", "drop")),
        "necklace_style": _pick(rng, ("chain", "pearls", "pendant")),
        # pose and framing
        "yaw": float(np.clip(n() * 12.0, -30.0, 30.0)),
        "roll": float(np.clip(n() * 4.0, -10.0, 10.0)),
        "pitch": float(np.clip(n() * 0.04, -0.08, 0.08)),
        "head_x": float(n() * 0.012), "head_y": float(n() * 0.012),
        "head_scale": float(rng.uniform(0.95, 1.06)),
        # face shape (head units)
        "face_width": float(rng.uniform(0.84, 0.92) + (0.05 if male else 0.0) + (0.08 if a["Chubby"] else 0.0)),
        # superellipse power of the jaw: 2 = oval, higher = squarer
        "jaw_power": float(1.7 if a["Oval_Face"] else rng.uniform(1.9, 2.4) + (0.35 if male else 0.0)
                           + (0.3 if a["Chubby"] else 0.0)),
        "chin_width": float(rng.uniform(0.16, 0.3) + (0.06 if male else 0.0)),
        "chin_len": float(rng.uniform(1.08, 1.2) + (0.04 if male else 0.0)),
        "eye_sep": float(rng.uniform(0.36, 0.42)), "eye_w": float(rng.uniform(0.16, 0.2)),
        "eye_h": float((0.045 if a["Narrow_Eyes"] else rng.uniform(0.075, 0.095)) * (0.9 if a["Smiling"] else 1.0)),
        "eye_tilt": float(rng.uniform(-0.02, 0.03)),
        "gaze": [float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.1, 0.1))],
        "brow_y": float(rng.uniform(-0.26, -0.2)),
        "brow_thick": float(rng.uniform(0.11, 0.14) if a["Bushy_Eyebrows"] else rng.uniform(0.06, 0.08) + (0.01 if male else 0.0)),
        "brow_arch": float(rng.uniform(0.07, 0.1) if a["Arched_Eyebrows"] else rng.uniform(0.0, 0.03)),
        "brow_color_mix": float(rng.uniform(0.0, 0.3)),
        "nose_w": float(rng.uniform(0.25, 0.3) if a["Big_Nose"] else rng.uniform(0.17, 0.21)),
        "nose_len": float(rng.uniform(0.44, 0.5) if a["Big_Nose"] or a["Pointy_Nose"] else rng.uniform(0.36, 0.42)),
        "nose_depth": float(rng.uniform(0.3, 0.38) if a["Pointy_Nose"] else rng.uniform(0.18, 0.26)),
        "mouth_y": float(rng.uniform(0.7, 0.76)),
        "mouth_w": float(rng.uniform(0.3, 0.36) + (0.05 if a["Smiling"] else 0.0)),
        "lip_upper": float(rng.uniform(0.09, 0.105) if a["Big_Lips"] else rng.uniform(0.06, 0.075)),
        "lip_lower": float(rng.uniform(0.12, 0.14) if a["Big_Lips"] else rng.uniform(0.08, 0.1)),
        "mouth_open": float(rng.uniform(0.05, 0.09) if a["Mouth_Slightly_Open"] else 0.0),
        "smile": float(rng.uniform(0.05, 0.09) if a["Smiling"] else rng.uniform(-0.015, 0.01)),
        "cheekbones": float(rng.uniform(0.5, 0.8) if a["High_Cheekbones"] else rng.uniform(0.0, 0.2)),
        "neck_w": float(rng.uniform(0.42, 0.5) + (0.08 if male else 0.0) + (0.08 if a["Chubby"] else 0.0)),
        "shoulder_w": float(rng.uniform(1.9, 2.3) + (0.3 if male else 0.0)),
        # lighting and background
        "light": [float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.1))],
        "light_strength": float(rng.uniform(0.35, 0.55)),
        "ambient": float(rng.uniform(0.55, 0.68)),
        "bg_style": _pick(rng, ("gradient", "bokeh", "wall", "radial")),
        "bg_colors": [[float(v) for v in rng.uniform(0.1, 0.95, 3)] for _ in range(2)],
        "seed_detail": int(rng.integers(0, 2**31 - 1)),
    }
    return p
