"""FaceSynth geometry: a 2.5-D head, painted back to front into image, label map and sketch.

The head is modelled in *head units* (u right, v down, w toward the camera; v = 0 at eye
level, 1 head unit = 0.30 of the frame). Every horizontal cross-section of the head is an
ellipse with half-width a(v), half-depth c(v) and a forward offset w0(v) (the chin juts
out). Features sit on that surface, so turning the head (yaw) moves them by w sin(yaw),
compresses the far side and hides the far ear behind the cheek; the silhouette at each
height is the exact outline of the rotated ellipse. Roll is a rotation in the image plane.
The framing matches aligned CelebA-HQ / FFHQ crops: eyes at 48 % of the height, mouth at
~75 %, neck and a hint of shoulders at the bottom.
"""
from __future__ import annotations

import math

import numpy as np

from ..conditions import CLASS_ID
from .params import CLOTH_COLORS, EYE_COLORS, HAIR_COLORS
from .raster import Canvas, ellipse

C = CLASS_ID
HEAD_UNIT = 0.30          # head units -> fraction of the frame
EYE_LINE = 0.48           # eye height as a fraction of the frame (CelebA-HQ alignment)


def _sin(x: np.ndarray) -> np.ndarray:
    """Element-wise sine through scalar libm: no SIMD variant, so identical on every machine."""
    return np.array([math.sin(float(t)) for t in np.ravel(x)]).reshape(np.shape(x))


def _clip(x, lo, hi):
    """np.clip without its Python-level overhead (it dominates on tiny arrays)."""
    return np.minimum(np.maximum(x, lo), hi)


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float32) * np.float32(1 - t) + np.asarray(b, np.float32) * np.float32(t)


class Head:
    """Geometry of one head: profile functions and the projection to pixels."""

    def __init__(self, p: dict, size: int):
        self.p, self.size = p, size
        self.R = HEAD_UNIT * p["head_scale"] * size                 # pixels per head unit
        self.cx = (0.5 + p["head_x"]) * size
        self.cy = (EYE_LINE + p["head_y"]) * size
        yaw = math.radians(p["yaw"])
        self.cos_y, self.sin_y = math.cos(yaw), math.sin(yaw)
        roll = math.radians(p["roll"])
        self.cos_r, self.sin_r = math.cos(roll), math.sin(roll)
        # head units -> pixels: scale by R about (cx, cy), then roll about a pivot at the neck
        px, py = self.cx, self.cy + 1.2 * self.R
        cr, sr = self.cos_r, self.sin_r
        ox, oy = self.cx - px, self.cy - py
        self._affine = ((self.R * cr, -self.R * sr, px + ox * cr - oy * sr),
                        (self.R * sr, self.R * cr, py + ox * sr + oy * cr))
        self.fw = p["face_width"]                                     # cheek half-width
        self.chin = p["chin_len"]                                     # chin height below eyes
        self.top = -1.45                                              # top of the skull

        # a(v) is evaluated hundreds of times per portrait: tabulate it once, interpolate.
        self._v_table = np.linspace(self.top, 3.0, 512)
        self._a_table = self._half_width(self._v_table)

    # -- profile of the head: half-width a(v), half-depth c(v), forward offset w0(v) ------
    def a(self, v):
        return np.interp(v, self._v_table, self._a_table)

    def _half_width(self, v: np.ndarray) -> np.ndarray:
        cran = self.fw * 1.02 * np.sqrt(_clip(1 - ((v + 0.05) / (self.top + 0.05)) ** 2, 0, 1))
        t = _clip(v / self.chin, 0, 1)
        pw = self.p["jaw_power"]
        cw = self.p["chin_width"]
        lower = cw + (self.fw - cw) * _clip(1 - t ** pw, 0, 1) ** (1 / pw)
        return np.where(v < -0.05, cran, np.where(v < 0, self.fw * 1.02 + (self.fw - self.fw * 1.02) * (v + 0.05) / 0.05, lower))

    def c(self, v):
        return 0.85 * self.a(v) + 0.05

    def w0(self, v):
        return 0.12 * _clip(np.asarray(v, np.float64) / self.chin, 0, 1)

    def surface_w(self, u, v):
        """Depth of the face surface at (u, v)."""
        a = self.a(v)
        ratio = np.asarray(u) / np.maximum(a, 1e-3)
        return self.w0(v) + (0.85 * a + 0.05) * np.sqrt(np.maximum(1 - ratio * ratio, 0))

    # -- projection --------------------------------------------------------------------
    def xy(self, x, y) -> np.ndarray:
        """Already-turned head coordinates (x, y) -> pixel points (N, 2), with roll."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        (a, b, c), (d, e, f) = self._affine
        out = np.empty(x.shape + (2,))
        out[..., 0] = a * x + b * y + c
        out[..., 1] = d * x + e * y + f
        return out

    def proj(self, u, v, w=None, lift: float = 0.0) -> np.ndarray:
        """Points on (or `lift` in front of) the face surface -> pixels."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        if w is None:
            w = self.surface_w(u, v) + lift
        x = u * self.cos_y + w * self.sin_y
        y = v + self.p["pitch"] * w
        return self.xy(x, y)

    def side_x(self, v, side: int, grow=0.0) -> np.ndarray:
        """x of the silhouette at heights v (side +1 right, -1 left), optionally grown outward."""
        a, c = self.a(v) + grow, self.c(v) + grow
        half = np.sqrt(a * a * self.cos_y ** 2 + c * c * self.sin_y ** 2)
        return self.w0(v) * self.sin_y + side * half

    def outline(self, v_end: float, grow: float = 0.0, side_grow=None, arc_grow=None,
                n_side: int = 14, n_arc: int = 25) -> np.ndarray:
        """Head outline in turned coordinates (x, y): up the right side from v_end, over the
        skull (an ellipse arc), down the left side to v_end.

        `grow` pushes it outward (hair volume, hats); `side_grow(v)` adds a push along the
        sides, and then the sides fall straight below the cheeks as hair does; `arc_grow(t)`
        adds a push along the skull arc (t = 0 right .. pi left): waves, curls.
        """
        top_v, H = -0.05, -0.05 - self.top
        A = self.fw * 1.02
        k = math.sqrt(self.cos_y ** 2 + 0.85 ** 2 * self.sin_y ** 2)   # the turned skull's width
        t0 = 0.0 if v_end > top_v else math.asin(min(1.0, (top_v - v_end) / (H + grow)))
        t = np.linspace(t0, math.pi - t0, n_arc)
        cos, sin = np.array([math.cos(x) for x in t]), np.array([math.sin(x) for x in t])
        r = grow + (arc_grow(t) if arc_grow is not None else 0.0)
        arc = np.stack([(A + r) * k * cos, top_v - (H + r) * sin], -1)
        if v_end <= top_v:
            return arc
        v = np.linspace(v_end, top_v, n_side)
        g = grow + (side_grow(v) if side_grow is not None else 0.0)
        vw = np.minimum(v, 0.3) if side_grow is not None else v
        right = np.stack([self.side_x(vw, +1, g), v], -1)
        left = np.stack([self.side_x(vw, -1, g), v], -1)[::-1]
        return np.concatenate([right, arc, left])

    def face_outline(self) -> np.ndarray:
        """The skin silhouette in pixels: skull and cheeks down to a rounded chin."""
        pts = self.outline(self.chin)
        cw = self.p["chin_width"]
        uc = np.linspace(-cw, cw, 9)
        vc = self.chin + 0.07 * (1 - (uc / cw) ** 2)
        wc = self.w0(self.chin) + self.c(self.chin) * 0.6
        chin = np.stack([uc * self.cos_y + wc * self.sin_y, vc], -1)
        pts = np.concatenate([chin, pts])
        return self.xy(pts[:, 0], pts[:, 1])

    def shade_field(self) -> np.ndarray:
        """Soft (half-Lambert) lighting of an ellipsoid around the head, for the whole frame."""
        p, S = self.p, self.size
        lx, ly = p["light"]
        lz = math.sqrt(max(0.05, 1 - lx * lx - ly * ly))
        xs = (np.arange(S, dtype=np.float32) + 0.5 - np.float32(self.cx + self.R * 0.15 * self.sin_y)) / np.float32(self.R * self.fw * 1.15)
        ys = (np.arange(S, dtype=np.float32) + 0.5 - np.float32(self.cy + self.R * 0.1)) / np.float32(self.R * 1.6)
        nx, ny = np.broadcast_arrays(xs[None, :], ys[:, None])
        r2 = nx * nx + ny * ny
        scale = np.where(r2 > 0.97, np.float32(0.985) / np.sqrt(np.maximum(r2, 1e-6)), np.float32(1))
        nx, ny = nx * scale, ny * scale
        nz = np.sqrt(np.maximum(np.float32(1) - nx * nx - ny * ny, 0))
        lam = nx * np.float32(lx) + ny * np.float32(ly) + nz * np.float32(lz)
        half = (lam + 1) * np.float32(0.5)
        return np.float32(p["ambient"]) + np.float32(p["light_strength"] * 1.4) * half * half


class Painter:
    """Paints one FaceSynth portrait. Layers run back to front in `paint()`."""

    def __init__(self, p: dict, size: int, rng: np.random.Generator):
        self.p, self.S, self.rng = p, size, rng
        self.A = p["attributes"]
        self.h = Head(p, size)
        self.cv = Canvas(size, rng)
        self.shade = self.h.shade_field()
        self.skin = np.asarray(p["skin"], np.float32)
        self.hair = np.asarray(HAIR_COLORS[p["hair_color"]][0], np.float32)
        self.sketch_lines: list[tuple[np.ndarray, int | None, bool]] = []   # (points, class, closed)

    # -- helpers ---------------------------------------------------------------------------
    def lw(self, head_units: float, minimum: float = 0.6) -> float:
        """A stroke width in pixels from a width in head units, never thinner than `minimum`."""
        return max(minimum, head_units * self.h.R)

    def skin_field(self, roi, k=1.0):
        return self.cv.field(roi, self.skin * np.float32(k), self.shade, "blotch", 0.035)

    # -- layers ----------------------------------------------------------------------------
    def background(self):
        p, S, cv = self.p, self.S, self.cv
        c0, c1 = (np.asarray(c, np.float32) for c in p["bg_colors"])
        t = (np.arange(S, dtype=np.float32) + 0.5) / np.float32(S)
        style = p["bg_style"]
        if style == "radial":
            d2 = (t[None, :] - 0.5) ** 2 + (t[:, None] - 0.4) ** 2
            m = _clip(d2 * 2.2, 0, 1)
        elif style == "wall":
            m = np.full((S, S), 0.15, np.float32) + 0.12 * cv.noise["blotch"]
        else:
            m = np.broadcast_to(t[:, None] * 0.8 + t[None, :] * 0.2, (S, S))
        cv.img[:] = c0 * (1 - m[..., None]) + c1 * m[..., None]
        if style == "bokeh":
            for _ in range(6):
                x, y, r = self.rng.uniform(0, S), self.rng.uniform(0, S * 0.8), self.rng.uniform(0.05, 0.16) * S
                cv.blob(x, y, r, r, _mix(c1, (1, 1, 1), 0.5), float(self.rng.uniform(0.2, 0.45)))
        cv.img *= (1 + 0.04 * cv.noise["fine"])[..., None]

    def hair_outer(self, v_end: float, side_flare: float, grow: float, wavy: bool) -> np.ndarray:
        """Outer contour of the hair mass (pixels): right side from v_end, over the top, left side."""
        h, p = self.h, self.p

        def side(v):
            below = np.maximum((v - 0.2) / 2.0, 0)
            extra = side_flare * below
            if wavy:
                extra = extra + p["wave_amp"] * _sin(v * p["wave_freq"]) * (0.4 + below)
            return extra

        arc = None
        if p["hair_style"] == "curly":
            arc = lambda t: 0.07 * np.abs(_sin(t * 7.0))
        elif wavy:
            arc = lambda t: 0.5 * p["wave_amp"] * _sin(t * p["wave_freq"])
        pts = h.outline(v_end, grow, side, arc)
        return h.xy(pts[:, 0], pts[:, 1])

    def hairline(self, receding: bool) -> tuple[np.ndarray, float]:
        """Front hairline across the forehead (right temple to left temple) and temple height."""
        h = self.h
        temple = -0.42
        aw = float(h.a(temple)) * 0.98
        u = np.linspace(aw, -aw, 17)
        x = np.abs(u) / aw
        v = -0.88 + 0.46 * x ** 2
        if receding:
            v = v - 0.3 * _clip(1 - ((x - 0.6) / 0.4) ** 2, 0, 1) ** 2 - 0.1
        part = self.p["hair_part"]
        v = v - 0.05 * _clip(1 - ((u - part * aw) / 0.25) ** 2, 0, 1)
        return h.proj(u, v), temple

    def hair_layers(self, front: bool):
        """Back hair (front=False) or the hair cap and side curtains (front=True)."""
        p, A, h, cv = self.p, self.A, self.h, self.cv
        style = p["hair_style"]
        wavy = bool(A["Wavy_Hair"])
        vol = p["hair_volume"]
        color = lambda roi: cv.field(roi, self.hair, self.shade, "streak", 0.28 if not wavy else 0.35)
        if style == "bald":
            if not front:   # a horseshoe fringe around the ears, seen past the silhouette
                v = np.linspace(-0.55, 0.35, 12)
                for side in (1, -1):
                    outer = h.xy(h.side_x(v, side, 0.05), v)
                    inner = h.xy(h.side_x(v[::-1], side, -0.12), v[::-1])
                    cv.fill([np.concatenate([outer, inner])], color, C["hair"])
            return
        length = p["hair_length"]
        long_style = style in ("long", "curly", "medium", "bob")
        if not front:
            v_end = max(length, 0.35) if long_style else 0.3
            flare = 0.35 if style == "curly" else 0.12 if style == "long" else 0.05
            outer = self.hair_outer(v_end, flare, vol, wavy)
            cv.fill([outer], color, C["hair"])
            if style == "updo":
                b = h.xy(np.array([-0.5 * h.sin_y]), np.array([h.top - 0.05]))[0]
                r = 0.42 * h.R
                cv.fill([ellipse(b[0], b[1], r, r * 0.8, 24)], color, C["hair"])
            return
        # Front: the cap over the skull down to the hairline, plus side curtains framing the face.
        line, temple = self.hairline(bool(A["Receding_Hairline"]))
        tucked = p["ears_tucked"] or not long_style
        v_end = temple + 0.25 if tucked else (length if style in ("long", "curly") else min(length, 1.0))
        outer = self.hair_outer(v_end, 0.05 if style != "curly" else 0.3, vol, wavy)
        vs = np.linspace(temple, v_end, 14)
        inset = np.where(vs < 0.55, 0.16 * _clip(1 - (vs - temple) / 1.0, 0.2, 1), 0.0)
        if not tucked:
            # Below the jaw the curtain falls outside the neck, in front of the shoulders.
            neck = p["neck_w"] + 0.08
            left_in = np.where(vs > h.chin, np.minimum(h.side_x(vs, -1, -inset), -neck), h.side_x(vs, -1, -inset))
            right_in = np.where(vs > h.chin, np.maximum(h.side_x(vs, +1, -inset), neck), h.side_x(vs, +1, -inset))
        else:
            left_in, right_in = h.side_x(vs, -1, -inset), h.side_x(vs, +1, -inset)
        poly = np.concatenate([outer, h.xy(left_in[::-1], vs[::-1]), line[::-1], h.xy(right_in, vs)])
        cv.fill([poly], color, C["hair"])

    def neck_and_cloth(self):
        p, A, h, cv = self.p, self.A, self.h, self.cv
        nw = p["neck_w"]
        shift = 0.08 * h.sin_y
        v = np.array([0.5, 2.6])
        neck = h.xy(np.array([shift - nw, shift - nw * 1.05, shift + nw * 1.05, shift + nw]),
                    np.array([v[0], v[1], v[1], v[0]]))
        neck_cov = cv.fill([neck], lambda roi: self.skin_field(roi, 0.93), C["neck"])
        # Shadow the jaw casts on the neck.
        c = h.xy(np.array([shift]), np.array([h.chin + 0.12]))[0]
        cv.blob(c[0], c[1], nw * 1.3 * h.R, 0.35 * h.R, self.skin * 0.45, 0.55, clip=neck_cov)
        if A["Double_Chin"]:
            u = np.linspace(-0.3, 0.3, 9)
            self.stroke(h.xy(u + shift, h.chin + 0.16 - 0.05 * (u / 0.3) ** 2), 0.025, self.skin * 0.6, 0.5)
        # Shoulders and the neckline.
        sw, style = p["shoulder_w"], p["cloth_style"]
        top = 1.47
        xs = np.linspace(nw * 0.9, sw, 8)
        shoulder_r = np.stack([shift + xs, top + 0.22 * _clip((xs - nw) / (sw - nw), 0, 1) ** 1.5], -1)
        depth = {"crew": 0.12, "vneck": 0.45, "collar": 0.3, "scoop": 0.35, "turtleneck": -0.6}[style]
        nl = np.linspace(-1, 1, 11)
        if style == "vneck" or style == "collar":
            neckline_v = top + depth * (1 - np.abs(nl))
        else:
            neckline_v = top + depth * (1 - nl ** 2)
        neckline = np.stack([shift + nl * nw * (1.25 if style != "turtleneck" else 1.0), neckline_v], -1)
        shoulder_l = shoulder_r[::-1] * (-1, 1) + (2 * shift, 0)
        bottom = np.array([[shift - sw, 3.0], [shift + sw, 3.0]])
        pts = np.concatenate([shoulder_l, neckline, shoulder_r, bottom[::-1]])
        base = np.asarray(CLOTH_COLORS[p["cloth_color"]], np.float32)
        cloth = cv.fill([h.xy(pts[:, 0], pts[:, 1])], lambda roi: cv.field(roi, base, self.shade * np.float32(0.95) + np.float32(0.05), "fine", 0.05), C["cloth"])
        if p["cloth_stripes"]:
            for k in range(-8, 9):
                x = shift + k * 0.22
                self.stroke(h.xy(np.array([x, x + 0.1]), np.array([1.3, 3.0])), 0.06, _mix(base, (1, 1, 1), 0.6) if base.mean() < 0.5 else base * 0.6, 1.0, clip=cloth, closed=False)
        if style == "collar":
            for side in (-1, 1):
                flap = np.array([[shift + side * nw * 1.25, top - 0.05], [shift + side * 0.05, top + 0.32],
                                 [shift + side * nw * 1.5, top + 0.25]])
                cv.fill([h.xy(flap[:, 0], flap[:, 1])], _mix(base, (1, 1, 1), 0.35), C["cloth"])

    def stroke(self, pts, width_hu, color, opacity=1.0, cls=None, clip=None, closed=False, label_where=None):
        """A line of `width_hu` head units along pixel points."""
        return self.cv.fill([pts], color, cls, opacity, clip=clip, stroke=self.lw(width_hu), closed=closed,
                            label_where=label_where)

    def necklace(self):
        p, h = self.p, self.h
        nw, shift = p["neck_w"], 0.08 * self.h.sin_y
        t = np.linspace(-1, 1, 15)
        pts = h.xy(shift + t * nw * 0.98, 1.38 + 0.2 * (1 - t ** 2))
        gold = np.array((0.85, 0.68, 0.25), np.float32)
        silver = np.array((0.82, 0.82, 0.85), np.float32)
        metal = gold if p["seed_detail"] % 2 else silver
        if p["necklace_style"] == "pearls":
            for q in pts[::1]:
                r = 0.045 * h.R + 0.4
                self.cv.fill([ellipse(q[0], q[1], r, r, 10)], (0.95, 0.93, 0.88), C["neck_l"])
        else:
            self.stroke(pts, 0.035, metal, cls=C["neck_l"])
        if p["necklace_style"] == "pendant":
            q = h.xy(np.array([shift]), np.array([1.62]))[0]
            r = 0.07 * h.R + 0.5
            self.cv.fill([ellipse(q[0], q[1], r * 0.8, r, 12)], metal * 0.9, C["neck_l"])
        self.sketch_lines.append((pts, None, False))

    def ears(self, earrings: bool):
        p, h, cv = self.p, self.h, self.cv
        ve = 0.16
        out = []
        for side, cls in ((+1, C["l_ear"]), (-1, C["r_ear"])):
            att = float(side * float(h.a(ve)) * h.cos_y + (-0.12) * h.sin_y)
            # The far ear slips behind the cheek as the head turns: gone past 20 degrees of yaw.
            far = side * p["yaw"] > 0
            hide = _clip((abs(p["yaw"]) - 8.0) / 12.0, 0.0, 1.0) if far else 0.0
            cx = att + side * (0.1 - 0.32 * hide)
            pts = ellipse(cx, ve, 0.16, 0.3, 20)
            px = h.xy(pts[:, 0], pts[:, 1])
            cov = cv.fill([px], lambda roi: self.skin_field(roi, 0.92), cls)
            inner = ellipse(cx + side * 0.01, ve, 0.08, 0.18, 14)
            cv.fill([h.xy(inner[:, 0], inner[:, 1])], self.skin * 0.7, None, 0.45, clip=cov)
            out.append((cx, ve + 0.28))
            if earrings:
                self.earring(cx, ve + 0.28)
        return out

    def earring(self, x, v):
        p, h, cv = self.p, self.h, self.cv
        metal = np.array((0.88, 0.72, 0.3) if p["seed_detail"] % 3 else (0.85, 0.85, 0.9), np.float32)
        style = p["earring_style"]
        if style == "stud":
            c = h.xy(np.array([x]), np.array([v]))[0]
            r = 0.045 * h.R + 0.6
            cv.fill([ellipse(c[0], c[1], r, r, 10)], metal, C["ear_r"])
        elif style == "hoop":
            ring = ellipse(x, v + 0.1, 0.08, 0.11, 16)
            self.stroke(h.xy(ring[:, 0], ring[:, 1]), 0.03, metal, cls=C["ear_r"], closed=True)
        else:
            self.stroke(h.xy(np.array([x, x]), np.array([v, v + 0.14])), 0.025, metal, cls=C["ear_r"])
            c = h.xy(np.array([x]), np.array([v + 0.2]))[0]
            r = 0.06 * h.R + 0.6
            cv.fill([ellipse(c[0], c[1], r * 0.8, r, 12)], metal * 0.95, C["ear_r"])

    def face(self):
        """Skin, then soft modelling: cheeks, wrinkles, stubble."""
        p, A, h, cv = self.p, self.A, self.h, self.cv
        skin = cv.fill([h.face_outline()], self.skin_field, C["skin"])
        self.skin_cov = skin
        for side in (1, -1):
            cheek = h.proj(side * 0.55, 0.28)
            if p["cheekbones"] > 0.3:
                hi = h.proj(side * 0.55, 0.1)
                cv.blob(hi[0], hi[1], 0.25 * h.R, 0.12 * h.R, _mix(self.skin, (1, 1, 1), 0.35), 0.3 * p["cheekbones"], clip=skin)
                lo = h.proj(side * 0.6, 0.5)
                cv.blob(lo[0], lo[1], 0.22 * h.R, 0.12 * h.R, self.skin * 0.7, 0.35 * p["cheekbones"], clip=skin)
            if A["Rosy_Cheeks"] or A["Heavy_Makeup"]:
                amount = 0.45 if A["Rosy_Cheeks"] else 0.2
                cv.blob(cheek[0], cheek[1], 0.24 * h.R, 0.18 * h.R, (0.85, 0.3, 0.32), amount, clip=skin)
        if A["5_o_Clock_Shadow"]:
            region = self.beard_region(0.0)
            shadow = self.skin * np.float32(0.6) + np.float32(0.04)
            cv.fill([region], lambda roi: cv.field(roi, shadow, self.shade, "fine", 0.25), None, 0.3, clip=skin)
        if not A["Young"]:
            for side in (1, -1):   # nasolabial folds and crow's feet
                u = side * np.linspace(p["nose_w"] * 1.1, p["mouth_w"] + 0.06, 7)
                v = np.linspace(p["nose_len"] - 0.02, p["mouth_y"] + 0.08, 7)
                self.stroke(h.proj(u, v), 0.025, self.skin * 0.62, 0.55, clip=skin)
                self.sketch_lines.append((h.proj(u, v), C["skin"], False))
                x0 = side * (p["eye_sep"] + p["eye_w"] + 0.04)
                for dv in (-0.05, 0.02):
                    self.stroke(h.proj(np.array([x0, x0 + side * 0.1]), np.array([dv, dv * 2.2])), 0.015, self.skin * 0.7, 0.5, clip=skin)
            for k, dv in enumerate((-0.52, -0.62, -0.72)):
                u = np.linspace(-0.4, 0.4, 9)
                self.stroke(h.proj(u, dv - 0.02 * (u / 0.4) ** 2), 0.015, self.skin * 0.72, 0.4, clip=skin)

    def beard_region(self, grow: float) -> np.ndarray:
        """Where a full beard grows: along the jaw from the sideburns round the chin, mouth left bare."""
        p, h = self.p, self.h
        v = np.linspace(0.12, h.chin, 10)
        right = np.stack([h.side_x(v, +1, grow), v], -1)
        left = np.stack([h.side_x(v[::-1], -1, grow), v[::-1]], -1)
        cw = p["chin_width"]
        uc = np.linspace(cw, -cw, 7)
        chin = np.stack([uc * h.cos_y + (h.w0(h.chin) + h.c(h.chin) * 0.6) * h.sin_y, h.chin + 0.07 + grow - 0.07 * (uc / cw) ** 2 + 0.07], -1)
        outer = np.concatenate([right, chin, left])
        outer_px = h.xy(outer[:, 0], outer[:, 1])
        mw, my, ll = p["mouth_w"], p["mouth_y"], p["lip_lower"]
        aw = float(h.a(0.3))
        iu = np.array([-0.68 * aw, -0.6 * aw, -mw - 0.06, -0.12, 0.12, mw + 0.06, 0.6 * aw, 0.68 * aw])
        iv = np.array([0.12, 0.5, my - 0.04, my + ll + 0.08, my + ll + 0.08, my - 0.04, 0.5, 0.12])
        inner = h.proj(iu, iv)
        return np.concatenate([outer_px, inner])

    def facial_hair(self):
        p, A, h, cv = self.p, self.A, self.h, self.cv
        color = lambda roi: cv.field(roi, self.hair * np.float32(0.9), self.shade, "streak", 0.22)
        mw, my, ul, ll = p["mouth_w"], p["mouth_y"], p["lip_upper"], p["lip_lower"]
        if not A["No_Beard"]:
            cv.fill([self.beard_region(0.04)], color, C["skin"], 0.95)
        if A["Goatee"] or (not A["No_Beard"]):
            u = np.array([-0.2, 0.2, 0.14, 0.0, -0.14])
            v = np.array([my + ll + 0.03, my + ll + 0.03, h.chin + 0.04, h.chin + 0.1, h.chin + 0.04])
            cv.fill([h.proj(u, v, lift=0.02)], color, C["skin"], 0.95)
        if A["Mustache"]:
            t = np.linspace(-1, 1, 11)
            top = np.stack([t * (mw + 0.04), my - ul - 0.11 + 0.04 * t ** 2], -1)
            bot = np.stack([t[::-1] * (mw + 0.06), my - 0.01 + 0.04 * t[::-1] ** 2 - p["smile"] * t[::-1] ** 2], -1)
            pts = np.concatenate([top, bot])
            cv.fill([h.proj(pts[:, 0], pts[:, 1], lift=0.02)], color, C["skin"], 0.95)

    def nose(self):
        p, h, cv = self.p, self.h, self.cv
        nl, nw, nd = p["nose_len"], p["nose_w"], p["nose_depth"]
        ru = np.array([0.1, 0.1, 0.12, nw * 0.85, nw, nw * 0.75, 0.3 * nw])
        rv = np.array([-0.08, 0.15, nl * 0.62, nl * 0.8, nl * 0.92, nl * 1.02, nl * 1.06])
        u = np.concatenate([-ru[::-1], ru])
        v = np.concatenate([rv[::-1], rv])
        prot = nd * _clip(v / nl, 0, 1) ** 1.4 * (1 - 0.5 * np.abs(u) / nw)
        pts = h.proj(u, v, h.surface_w(u, v) + prot)
        region = cv.fill([pts], lambda roi: self.skin_field(roi, 0.97), C["nose"])
        # Modelling: a shadow down the side away from the light, nostrils, a highlight on the tip.
        lx = p["light"][0]
        side = -1 if lx > 0 else 1
        su = side * np.array([0.06, 0.08, nw * 0.8, nw * 0.9])
        sv = np.array([0.0, nl * 0.6, nl * 0.85, nl * 0.98])
        self.stroke(h.proj(su, sv, h.surface_w(su, sv) + nd * _clip(sv / nl, 0, 1) ** 1.4 * 0.6), 0.05, self.skin * 0.7, 0.35, clip=region)
        for s in (1, -1):
            c = h.proj(s * nw * 0.45, nl * 0.97, h.surface_w(s * nw * 0.45, nl) + nd * 0.6)
            cv.fill([ellipse(c[0], c[1], 0.055 * h.R * (0.6 + 0.4 * h.cos_y), 0.028 * h.R + 0.3, 12)], self.skin * 0.35, None, 0.85, clip=region)
        tip = h.proj(0.0, nl * 0.85, h.surface_w(0.0, nl * 0.85) + nd * 0.8)
        cv.blob(tip[0], tip[1], 0.08 * h.R, 0.06 * h.R, _mix(self.skin, (1, 1, 1), 0.4), 0.35, clip=region)
        self.sketch_lines.append((pts[len(ru) + 2:], C["nose"], False))
        return region

    def eyes(self):
        p, A, h, cv = self.p, self.A, self.h, self.cv
        es, ew, eh = p["eye_sep"], p["eye_w"], p["eye_h"]
        s = np.linspace(-1, 1, 13)
        iris_color = np.asarray(EYE_COLORS[p["eye_color"]], np.float32)
        brow_color = _mix(self.hair, (0.12, 0.09, 0.07), 0.35 if HAIR_COLORS[p["hair_color"]][0][0] > 0.5 else 0.1)
        for side, cls, bcls in ((+1, C["l_eye"], C["l_brow"]), (-1, C["r_eye"], C["r_brow"])):
            outward = s * side          # +1 = outer corner
            u = side * es + s * ew
            tilt = p["eye_tilt"] * outward
            upper = -eh * (1 - s * s) ** 0.7 - tilt + 0.012 * (1 - outward)
            lower = eh * 0.7 * (1 - s * s) ** 0.9 - tilt + 0.012 * (1 - outward)
            almond = np.concatenate([h.proj(u, upper), h.proj(u[::-1], lower[::-1])])
            if A["Heavy_Makeup"]:
                c = h.proj(side * es, -eh - 0.04)
                cv.blob(c[0], c[1], ew * 1.2 * h.R, 0.09 * h.R, (0.45, 0.3, 0.5), 0.35, clip=self.skin_cov)
            if A["Bags_Under_Eyes"]:
                self.stroke(h.proj(u[2:-2], lower[2:-2] + 0.07), 0.03, self.skin * 0.68, 0.55, clip=self.skin_cov)
            eye = cv.fill([almond], lambda roi: cv.field(roi, (0.93, 0.91, 0.88), self.shade), cls)
            gx, gy = p["gaze"]
            ir = 0.5 * ew
            iris = ellipse(side * es + gx * ew * 0.4, gy * eh, ir, ir, 18)
            ipx = h.proj(iris[:, 0], iris[:, 1])
            cv.fill([ipx], lambda roi: cv.field(roi, iris_color, self.shade), None, clip=eye)
            pupil = ellipse(side * es + gx * ew * 0.4, gy * eh, ir * 0.45, ir * 0.45, 12)
            cv.fill([h.proj(pupil[:, 0], pupil[:, 1])], (0.03, 0.03, 0.03), None, clip=eye)
            glint = h.proj(side * es + gx * ew * 0.4 + 0.25 * ir, gy * eh - 0.3 * ir)
            cv.blob(glint[0], glint[1], ir * 0.3 * h.R, ir * 0.3 * h.R, (1, 1, 1), 0.8, clip=eye)
            liner = 0.03 if A["Heavy_Makeup"] else 0.018
            self.stroke(h.proj(u, upper), liner, (0.08, 0.05, 0.04), 0.9)
            self.sketch_lines.append((ipx, cls, True))
            # Brow: thick at the inner end, tapering to the tail, arched toward the outside.
            bs = np.linspace(0, 1, 10)
            bu = side * (es - ew * 1.05 + bs * ew * 2.4)
            arch = p["brow_arch"] * _clip(1 - np.abs(bs - 0.62) / 0.62, 0, 1) * 1.6 + 0.03 * bs
            bv = p["brow_y"] - arch + 0.02 * bs ** 2
            th = p["brow_thick"] * (1 - 0.6 * bs ** 1.5)
            brow = np.concatenate([h.proj(bu, bv - th / 2), h.proj(bu[::-1], (bv + th / 2)[::-1])])
            cv.fill([brow], lambda roi: cv.field(roi, brow_color, self.shade, "fine", 0.3), bcls)

    def mouth(self):
        p, A, h, cv = self.p, self.A, self.h, self.cv
        mw, my, ul, ll = p["mouth_w"], p["mouth_y"], p["lip_upper"], p["lip_lower"]
        s = np.linspace(-1, 1, 15)
        u = s * mw
        line = my - p["smile"] * s * s + p["smile"] * 0.3
        gap = p["mouth_open"] * (1 - s * s) ** 0.7
        bow = 0.015 * _clip(1 - np.abs(s) / 0.18, 0, 1)
        top = line - gap / 2 - ul * (1 - s * s) ** 0.55 + bow
        bottom = line + gap / 2 + ll * (1 - s * s) ** 0.6
        inner_top, inner_bot = line - gap / 2, line + gap / 2
        natural = self.skin * np.array((0.86, 0.58, 0.56), np.float32) + np.array((0.05, 0.0, 0.0), np.float32)
        lip = np.asarray(p["lipstick"], np.float32) if A["Wearing_Lipstick"] else natural
        lip_field = lambda k: (lambda roi: cv.field(roi, lip * np.float32(k), self.shade))
        upper = np.concatenate([h.proj(u, top), h.proj(u[::-1], inner_top[::-1])])
        lower = np.concatenate([h.proj(u, inner_bot), h.proj(u[::-1], bottom[::-1])])
        cv.fill([upper], lip_field(0.88), C["u_lip"])
        low = cv.fill([lower], lip_field(1.0), C["l_lip"])
        c = h.proj(0.0, bottom[7] - ll * 0.45)
        cv.blob(c[0], c[1], mw * 0.45 * h.R, ll * 0.3 * h.R, (1, 1, 1), 0.18, clip=low)
        if p["mouth_open"] > 0:
            inner = np.concatenate([h.proj(u, inner_top), h.proj(u[::-1], inner_bot[::-1])])
            m = cv.fill([inner], (0.25, 0.06, 0.07), C["mouth"])
            if A["Smiling"]:
                teeth = np.concatenate([h.proj(u * 0.8, inner_top - 0.01), h.proj(u[::-1] * 0.8, (inner_top + gap * 0.6)[::-1])])
                cv.fill([teeth], (0.94, 0.92, 0.86), None, clip=m)
        self.sketch_lines.append((h.proj(u, (inner_top + inner_bot) / 2), None, False))
        for side in (1, -1):   # corners
            self.stroke(h.proj(np.array([side * mw, side * (mw + 0.03)]), np.array([line[-1], line[-1] - p["smile"] * 0.5])), 0.02, self.skin * 0.5, 0.5)

    def bangs(self):
        p, h, cv = self.p, self.h, self.cv
        line, _ = self.hairline(False)
        aw = float(h.a(-0.4)) * 0.9
        s = np.linspace(1, -1, 15)
        sweep = p["hair_part"] * 0.1
        v = p["brow_y"] - 0.06 - sweep * s - 0.04 * (1 - s * s)
        if self.A["Wavy_Hair"]:
            v = v - 0.03 * np.abs(_sin(s * 9.0))
        else:
            v = v - 0.025 * (np.arange(15) % 2)
        edge = h.proj(s * aw, v, lift=0.04)
        color = lambda roi: cv.field(roi, self.hair, self.shade, "streak", 0.3)
        cv.fill([np.concatenate([line, edge[::-1]])], color, C["hair"])

    def sideburns(self):
        h, cv = self.h, self.cv
        v = np.linspace(-0.4, 0.32, 6)
        color = lambda roi: cv.field(roi, self.hair, self.shade, "fine", 0.4)
        for side in (1, -1):
            outer = h.xy(h.side_x(v, side, 0.01), v)
            inner = h.xy(h.side_x(v[::-1], side, -0.13), v[::-1])
            cv.fill([np.concatenate([outer, inner])], color, C["hair"])

    def hat(self):
        p, h, cv = self.p, self.h, self.cv
        color = np.asarray(p["hat_color"], np.float32)
        style = p["hat_style"]
        vb = -0.62 if style != "brimmed" else -0.7
        grow = p["hair_volume"] + 0.06
        cap = h.outline(vb, grow)
        u = np.linspace(-1, 1, 15) * float(h.a(vb) + grow)
        front = h.proj(u, vb + 0.05 * (u / u[-1]) ** 2, lift=grow)
        crown = np.concatenate([h.xy(cap[:, 0], cap[:, 1]), front])
        tex = "streak" if style == "beanie" else "fine"
        crown_cov = cv.fill([crown], lambda roi: cv.field(roi, color, self.shade, tex, 0.25), C["hat"])
        if style == "beanie":
            band = np.concatenate([front, h.proj(u[::-1], vb - 0.22 + 0.05 * (u[::-1] / u[-1]) ** 2, lift=grow + 0.03)])
            cv.fill([band], lambda roi: cv.field(roi, color * np.float32(0.85), self.shade, "streak", 0.4), C["hat"])
        elif style == "cap":
            vis = np.concatenate([front, h.proj(u[::-1] * 0.95, vb + 0.22 - 0.08 * (u[::-1] / u[-1]) ** 2, lift=grow + 0.3)])
            cv.fill([vis], lambda roi: cv.field(roi, color * np.float32(0.8), self.shade), C["hat"])
        else:
            c = h.xy(np.array([0.2 * h.sin_y]), np.array([vb + 0.02]))[0]
            brim = ellipse(c[0], c[1], 1.7 * h.R, 0.22 * h.R, 40, math.radians(p["roll"]))
            cv.fill([brim], lambda roi: cv.field(roi, color * np.float32(0.9), self.shade), C["hat"])
        return crown_cov

    def glasses(self):
        p, h, cv = self.p, self.h, self.cv
        es = p["eye_sep"]
        shape = p["glasses_shape"]
        frame = np.array((0.08, 0.07, 0.07) if p["seed_detail"] % 4 else (0.6, 0.5, 0.3), np.float32)
        lenses = []
        for side in (1, -1):
            if shape == "round":
                pts = ellipse(side * es, 0.01, 0.2, 0.18, 24)
            elif shape == "rect":
                t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
                cos, sin = np.array([math.cos(x) for x in t]), np.array([math.sin(x) for x in t])
                pts = np.stack([side * es + 0.22 * np.sign(cos) * np.abs(cos) ** 0.4,
                                0.02 + 0.14 * np.sign(sin) * np.abs(sin) ** 0.4], -1)
            else:
                e = ellipse(0, 0, 0.22, 0.18, 24)
                e[:, 1] += np.where(e[:, 1] > 0, 0.05 * (1 - np.abs(e[:, 0]) / 0.22) * (1 + side * e[:, 0] / 0.22), 0)
                pts = e + (side * es, 0.0)
            lenses.append(h.proj(pts[:, 0], pts[:, 1], lift=0.12))
        eye_ids = (C["l_eye"], C["r_eye"])
        for lens in lenses:
            roi, cov = cv.coverage([lens])
            if roi is None:
                continue
            x0, y0, x1, y1 = roi
            if p["sunglasses"]:
                cv.paint(roi, cov, (0.06, 0.06, 0.08), C["eye_g"], 0.92)
            else:
                not_eye = ~np.isin(cv.label[y0:y1, x0:x1], eye_ids)
                cv.paint(roi, cov, (0.75, 0.82, 0.9), C["eye_g"], 0.12, label_where=not_eye)
            self.stroke(lens, 0.04, frame, cls=C["eye_g"], closed=True)
        bridge_u = np.array([es - 0.2, 0.0, -(es - 0.2)])
        self.stroke(h.proj(bridge_u, np.array([-0.02, -0.06, -0.02]), lift=0.14), 0.035, frame, cls=C["eye_g"])
        for side in (1, -1):   # temple arms run back toward the ears
            u = np.array([side * (es + 0.2), side * float(h.a(0.0)) * 0.99])
            pts = h.proj(u, np.array([-0.02, 0.02]), lift=0.04)
            if abs(p["yaw"]) > 12 and np.sign(p["yaw"]) != side:
                continue      # the far arm is hidden behind the head
            self.stroke(pts, 0.035, frame, cls=C["eye_g"])

    # -- the whole portrait ---------------------------------------------------------------
    def paint(self) -> None:
        A = self.A
        self.background()
        self.hair_layers(front=False)
        self.neck_and_cloth()
        if A["Wearing_Necklace"]:
            self.necklace()
        self.ears(bool(A["Wearing_Earrings"]))
        self.face()
        self.nose()
        self.eyes()
        self.mouth()
        self.facial_hair()
        if A["Sideburns"]:
            self.sideburns()
        self.hair_layers(front=True)
        if A["Bangs"]:
            self.bangs()
        if A["Wearing_Hat"]:
            self.hat()
        if A["Eyeglasses"]:
            self.glasses()
