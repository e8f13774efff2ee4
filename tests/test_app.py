"""The web app (faceweave.app): its plain functions, its API through gradio_client against a
server on loopback, and one end-to-end run in headless Chromium.

The bundled models at 2-4 steps throughout (the real-face default; diffusion-64, the
FaceSynth model, where its layout prior is tested); the whole file takes well under a
minute on a 2-core CPU. FACEWEAVE_SCREENSHOT=docs/app.png makes the browser test also save
its screenshot there (with 20 steps, so the faces in the picture are finished ones).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("gradio", reason="the web app tests need gradio: pip install -e '.[test]'")
gradio_client = pytest.importorskip("gradio_client", reason="the app API tests need gradio_client")

from click.testing import CliRunner
from PIL import Image

from faceweave import Conditions, app, io
from faceweave.cli import main
from faceweave.conditions import (
    CELEBA_ATTRIBUTES,
    CELEBAMASK_PALETTE,
    CLASS_ID,
    colorize_mask,
)
from faceweave.errors import FaceweaveError

# Gradio 6's queue calls pandas APIs that pandas 3 deprecates; not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DONT_CARE = ["don't care"] * len(CELEBA_ATTRIBUTES)


@pytest.fixture(scope="module", autouse=True)
def _pil_limit_restored():
    """launch() lowers PIL's decompression-bomb limit for the server process; give the other
    test modules back the limit they expect."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


@pytest.fixture(scope="module")
def models():
    m = app.Models()
    m.warm_up()
    return m


@pytest.fixture(scope="module")
def server(models):
    demo, url = app.launch(port=app.free_port(), models=models, block=False, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def facesynth_models():
    """The FaceSynth diffusion-64, which draws a layout for a prompt given without a mask."""
    return app.Models(model="diffusion-64")


@pytest.fixture(scope="module")
def facesynth_server(facesynth_models):
    demo, url = app.launch(port=app.free_port(), models=facesynth_models, block=False, quiet=True)
    yield url
    demo.close()


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------------------------------
# Canvas -> conditions
# ---------------------------------------------------------------------------------------

def rgba_canvas(side=128):
    return np.zeros((side, side, 4), np.uint8)       # transparent: nothing painted


def soft_disc(side, centre, radius):
    """The opacity of an antialiased brush dab: 255 inside, partial on the rim."""
    alpha = np.zeros((side, side), np.uint8)
    cv2.circle(alpha, centre, radius, 255, -1, lineType=cv2.LINE_AA)
    return alpha


def blend_over(rgb, alpha, colour):
    a = alpha[..., None].astype(np.float32) / 255.0
    return np.rint(rgb * (1 - a) + np.asarray(colour, np.float32) * a).astype(np.uint8)


SKIN, HAIR = (CELEBAMASK_PALETTE[CLASS_ID[c]] for c in ("skin", "hair"))


def test_browser_canvas_strokes_over_an_example_keep_their_class_to_the_rim():
    """What the page sends: the example mask as background, a brush layer whose soft rim has
    partial opacity but the brush's own colour (canvases keep colour apart from opacity)."""
    own = app.example_masks()["FaceSynth test face 0"]()
    value = app.mask_to_canvas(own)
    side = value["background"].shape[0]
    alpha = soft_disc(side, (128, 180), 30)
    layer = np.zeros((side, side, 4), np.uint8)
    layer[alpha > 0, :3] = SKIN
    layer[..., 3] = alpha
    value["layers"] = [layer]
    value["composite"] = np.dstack([blend_over(value["background"], alpha, SKIN), np.full((side, side), 255)])
    rim = (alpha > 0) & (alpha < 255)
    assert rim.sum() > 50                                           # the stroke really has a soft edge
    expected = io.resize_mask(own, side).copy()
    expected[alpha >= 128] = CLASS_ID["skin"]
    np.testing.assert_array_equal(app.canvas_to_mask(value), expected)


def test_bare_composite_blended_edges_snap_and_unpainted_white_is_background():
    """An API client's picture: strokes antialiased over Gradio's white empty canvas and over
    each other; every blended pixel takes one of the classes it lies between."""
    rgb = np.full((128, 128, 3), 255, np.uint8)
    hair = soft_disc(128, (64, 50), 40)
    rgb = blend_over(rgb, hair, HAIR)
    skin = soft_disc(128, (64, 70), 30)
    rgb = blend_over(rgb, skin, SKIN)
    mask = app.canvas_to_mask({"background": None, "layers": [], "composite": rgb})
    assert mask.shape == (128, 128) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {CLASS_ID["background"], CLASS_ID["skin"], CLASS_ID["hair"]}
    assert mask[70, 64] == CLASS_ID["skin"] and mask[15, 64] == CLASS_ID["hair"] and mask[120, 5] == 0
    rim = (skin > 0) & (skin < 255)
    inside_hair = cv2.erode((hair == 255).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0   # 4 px from white
    assert set(np.unique(mask[rim & inside_hair]).tolist()) == {CLASS_ID["skin"], CLASS_ID["hair"]}
    assert set(np.unique(mask[rim & (hair == 0)]).tolist()) <= {CLASS_ID["skin"], CLASS_ID["background"]}


def test_canvas_to_mask_unknown_colour_is_a_one_line_error():
    canvas = rgba_canvas()
    canvas[20:100, 20:100] = (120, 120, 120, 255)       # grey is no class of the palette
    with pytest.raises(FaceweaveError) as err:
        app.canvas_to_mask(canvas)
    text = one_line(err)
    assert "#787878" in text and "class brushes" in text and "--palette" not in text


def test_empty_canvases_mean_no_condition():
    assert app.canvas_to_mask(None) is None
    assert app.canvas_to_mask({"background": None, "layers": [], "composite": None}) is None
    assert app.canvas_to_mask(rgba_canvas()) is None
    assert app.canvas_to_sketch(rgba_canvas()) is None
    with pytest.raises(FaceweaveError) as err:
        app.canvas_to_mask(np.zeros((4, 4, 2), np.uint8))
    assert "RGB(A) picture" in one_line(err)


def test_sketch_canvas_dark_lines_become_lines():
    canvas = rgba_canvas(64)
    cv2.line(canvas, (5, 32), (60, 32), (0, 0, 0, 255), 2)
    sketch = app.canvas_to_sketch(canvas)
    assert sketch.dtype == np.uint8 and sketch[32, 30] == 255 and sketch[5, 5] == 0
    back = app.canvas_to_sketch(app.sketch_to_canvas(sketch, 64)["background"])
    np.testing.assert_array_equal(back, sketch)


def test_mask_canvas_round_trip_and_examples():
    examples = app.example_masks()
    assert any(k.startswith("example:") for k in examples) and any("FaceSynth" in k for k in examples)
    for load in examples.values():
        mask = load()
        value = app.mask_to_canvas(mask)
        assert value["background"].shape == (app.CANVAS, app.CANVAS, 3)
        np.testing.assert_array_equal(app.canvas_to_mask(value), io.resize_mask(mask, app.CANVAS))


def test_attribute_states():
    states = dict.fromkeys(CELEBA_ATTRIBUTES, "don't care") | {"Smiling": "want", "Eyeglasses": "don't want"}
    assert app.attributes_from_states(states) == {"Smiling": 1, "Eyeglasses": 0}
    assert app.attributes_from_states(list(states.values())) == {"Smiling": 1, "Eyeglasses": 0}
    with pytest.raises(FaceweaveError) as err:
        app.attributes_from_states({"Smiling": "maybe"})
    assert "maybe" in one_line(err)


def test_uploads_are_read_by_io_and_errors_name_the_upload(tmp_path):
    junk = tmp_path / "tmpXYZ-upload.png"
    junk.write_text("not a picture")
    with pytest.raises(FaceweaveError) as err:
        app.read_upload(junk, "mask")
    text = one_line(err)
    assert "the uploaded mask" in text and str(junk) not in text
    np.testing.assert_array_equal(app.read_upload(EXAMPLES / "mask_man_colour.png", "mask"),
                                  io.read_mask(EXAMPLES / "mask_man_colour.png"))


# ---------------------------------------------------------------------------------------
# Generate and edit as plain functions
# ---------------------------------------------------------------------------------------

def test_run_generate_gives_the_pipelines_images_and_metadata(models):
    mask = io.read_mask(EXAMPLES / "mask_woman.png")
    steps_seen = []
    out = app.run_generate(models, "a smiling woman", {"Smiling": 1}, mask, None, steps=2, seed=3, n_images=2,
                           on_step=lambda done, total: steps_seen.append((done, total)))
    assert len(out.images) == 2 and all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in out.images)
    assert [m["seed"] for m in out.metadata] == [3, 4]
    assert out.metadata[0]["steps"] == 2 and out.metadata[0]["given"] == ["prompt", "attributes", "mask"]
    assert steps_seen[-1] == (4, 4)
    # one image at a time gives what one CLI-style call with all seeds gives, up to the
    # uint8 rounding of batch-size-dependent float sums (the bound test_diffusion_pipeline's
    # batch-vs-single test uses): the step-4600 weights put one of 12,288 values on a .5 edge
    direct = models.pipeline("diffusion")(prompt="a smiling woman", attributes={"Smiling": 1}, mask=mask,
                                          seeds=[3, 4], num_inference_steps=2, progress=False)
    for a, b in zip(out.images, direct.images):
        assert np.abs(a.astype(int) - b).max() <= 1
        assert np.mean(a != b) < 0.001


def test_run_generate_without_a_mask_shows_the_drawn_layouts(models, facesynth_models):
    """The diffusion pipeline's layout prior (on for diffusion-64, off for the real-face
    default): each face comes with the layout drawn for it, and a per-modality setting
    guides the drawn mask with the common scale."""
    real = app.run_generate(models, "a man with glasses", steps=1, seed=2)
    assert real.layouts == [None] and real.metadata[0]["given"] == ["prompt"] and len(app._gallery(real)) == 1
    models = facesynth_models
    out = app.run_generate(models, "a man with glasses", steps=1, seed=2, n_images=2,
                           scales={"prompt": 3.0})
    assert len(out.layouts) == 2 and all(lay.shape == (64, 64) for lay in out.layouts)
    assert out.metadata[0]["given"] == ["prompt", "mask"] and "Eyeglasses" in out.metadata[0]["layout"]["matched"]
    assert out.metadata[0]["guidance_scale"] == {"prompt": 3.0, "mask": 2.0}
    items = app._gallery(out)
    assert [caption for _, caption in items] == ["seed 2", "seed 2: the layout drawn for it", "seed 3",
                                                 "seed 3: the layout drawn for it"]
    assert np.array_equal(items[1][0], colorize_mask(out.layouts[0]))
    with_mask = app.run_generate(models, "a man with glasses", mask=out.layouts[0], steps=1, seed=2,
                                 scales={"prompt": 3.0})
    assert with_mask.layouts == [None] and len(app._gallery(with_mask)) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({}, "nothing to generate from"),
    ({"prompt": "a face", "attributes": {"Smilling": 1}}, "unknown attribute"),
    ({"prompt": "a face", "steps": 0}, "steps must be a whole number from 1 to 100"),
    ({"prompt": "a face", "n_images": 9}, "number of images"),
    ({"prompt": "a face", "scales": {"sketch": 3.0}}, "guidance scale given for 'sketch'"),
    ({"prompt": "a face", "backend": "eg3d"}, "unknown backend 'eg3d'"),
    ({"prompt": "a face", "backend": "multiview"}, "the multiview backend has no bundled model; start the app with --model"),
    ({"prompt": "a face", "guidance": "lots"}, "guidance must be a number"),
])
def test_run_generate_bad_inputs_are_one_line_errors(models, kwargs, words):
    with pytest.raises(FaceweaveError) as err:
        app.run_generate(models, **{"steps": 2, **kwargs})
    assert words in one_line(err)


def test_run_edit_changes_only_the_painted_region(models):
    from faceweave.data.unified import facesynth_seed
    from faceweave.synth import render

    photo = render(facesynth_seed("test"), 1, size=64, captions=1).image
    own = models.parser().predict(photo)
    edited = own.copy()
    edited[own == CLASS_ID["hair"]] = CLASS_ID["background"]       # paint the hair away
    assert (edited != own).any()
    out = app.run_edit(models, photo, edited, steps=2)
    assert out.after.shape == (64, 64, 3) and out.metadata["edited_pixels"] > 0
    far = cv2.dilate((edited != own).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    np.testing.assert_array_equal(out.after[far], photo[far])      # untouched outside the edit
    with pytest.raises(FaceweaveError) as err:
        app.run_edit(models, photo, own, steps=2)
    assert "nothing to edit" in one_line(err)


class MixingPipeline:
    """A pipeline shaped like collab's: asked for return_influence, it reports mixing weights."""
    names = ("text", "mask")

    def influence_pictures(self, out, n=None):
        """Stands in for CollabPipeline.influence_pictures."""
        return [np.full((len(self.names) * 8, maps.shape[1] * 8, 3), 200, np.uint8) for maps in out.influence[:n]]

    def __call__(self, *, conditions, seeds, num_inference_steps, guidance_scale, callback, progress,
                 return_influence=False):
        for i in range(num_inference_steps):
            callback(i, 1.0, None, None)
        out = app.Generated([np.zeros((64, 64, 3), np.uint8) for _ in seeds], [{"seed": s} for s in seeds])
        out.influence = [np.ones((2, num_inference_steps, 8, 8), np.float16)] if return_influence else None
        return out


def test_a_mixing_backend_gets_its_influence_picture(models, monkeypatch):
    monkeypatch.setattr(models, "pipeline", lambda backend: MixingPipeline())
    out = app.run_generate(models, "a face", steps=3, n_images=2, backend="collab")
    assert len(out.influence) == 2 and out.influence[0].shape == (16, 24, 3)


def test_the_bundled_collab_backend_is_offered_after_diffusion_and_draws_its_maps(models):
    assert models.backends[:2] == ["diffusion", "collab"]
    mask = io.read_mask(EXAMPLES / "mask_woman.png") if (EXAMPLES / "mask_woman.png").exists() else None
    out = app.run_generate(models, "a smiling woman", mask=mask, steps=2, n_images=1, backend="collab")
    assert out.images[0].shape == (64, 64, 3) and out.metadata[0]["backend"] == "collab"
    assert len(out.influence) == 1 and out.influence[0].ndim == 3


def test_the_bundled_ddgi_backend_is_offered_and_generates(models):
    assert "ddgi" in models.backends
    out = app.run_generate(models, "a smiling woman", steps=2, n_images=1, backend="ddgi")
    assert out.images[0].shape == (64, 64, 3) and out.metadata[0]["backend"] == "ddgi"


def test_the_bundled_gan_backend_generates_without_steps_and_edits_a_photo(models):
    assert "gan" in models.backends
    calls = []
    out = app.run_generate(models, "a smiling woman", steps=7, n_images=2, backend="gan",
                           on_step=lambda done, total: calls.append((done, total)))
    assert len(out.images) == 2 and out.metadata[0]["backend"] == "gan"
    assert calls == [(1, 2), (2, 2)]                      # one tick per image: there are no steps
    photos = sorted((REAL / "photos").glob("*.jpg")) if REAL.is_dir() else []
    if not photos:
        pytest.skip(f"real sample photos not found at {REAL}")
    photo = io.read_image(photos[0])
    edited = app.run_edit(models, photo, prompt="a smiling person", steps=2, backend="gan")
    assert edited.after.shape == edited.before.shape and edited.metadata["backend"] == "gan"


def test_big_photos_are_shrunk_before_parsing():
    assert app.working_photo(np.zeros((3000, 2000, 3), np.uint8)).shape == (app.CANVAS, app.CANVAS, 3)
    small = np.zeros((64, 64, 3), np.uint8)
    assert app.working_photo(small) is small
    with pytest.raises(FaceweaveError) as err:
        app.working_photo(np.zeros((64, 64), np.uint8))
    assert "RGB picture" in one_line(err)


def test_cli_app_help_has_an_example():
    res = CliRunner().invoke(main, ["app", "--help"])
    assert res.exit_code == 0 and "Example" in res.output and "127.0.0.1" in res.output


# ---------------------------------------------------------------------------------------
# The app's API through gradio_client, against a server on loopback
# ---------------------------------------------------------------------------------------

def generate_args(prompt="", mask=None, steps=2, n_images=1, seed=0, states=DONT_CARE):
    """Positional arguments of the /generate endpoint (the page's Generate button)."""
    return [prompt, mask, None, "diffusion", steps, 2.0, None, None, None, None, seed, n_images, *states]


def editor_value(path):
    from gradio_client import handle_file
    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}


def test_api_generate_returns_images_metadata_and_a_download(server):
    client = gradio_client.Client(server, verbose=False)
    states = list(DONT_CARE)
    states[CELEBA_ATTRIBUTES.index("Male")] = "want"
    gallery, meta, archive, influence = client.predict(
        *generate_args("a man with glasses", editor_value(EXAMPLES / "mask_man_colour.png"), n_images=2,
                       seed=5, states=states), api_name="/generate")
    assert [g["caption"] for g in gallery] == ["seed 5", "seed 6"]
    assert influence["visible"] is False                     # diffusion mixes no models
    assert Image.open(gallery[0]["image"]).size == (64, 64)
    assert [r["seed"] for r in meta["results"]] == [5, 6]
    assert meta["results"][0]["attributes"] == {"Male": 1} and "mask" in meta["results"][0]["given"]
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["000005.png", "000006.png", "meta.json"]
        assert json.loads(zf.read("meta.json"))["images"] == ["000005.png", "000006.png"]
    # a prompt alone: the real-face default invents the layout, so only the face comes back
    gallery, meta, archive, _ = client.predict(*generate_args("a woman in a hat", seed=1), api_name="/generate")
    assert [g["caption"] for g in gallery] == ["seed 1"]
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["000001.png", "meta.json"]


def test_api_generate_returns_the_drawn_layout_with_its_face(facesynth_server):
    """diffusion-64 draws a layout for a prompt alone: it comes back in the gallery and the download."""
    client = gradio_client.Client(facesynth_server, verbose=False)
    gallery, meta, archive, _ = client.predict(*generate_args("a woman in a hat", seed=1), api_name="/generate")
    assert [g["caption"] for g in gallery] == ["seed 1", "seed 1: the layout drawn for it"]
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["000001.png", "000001_layout.png", "meta.json"]
        assert json.loads(zf.read("meta.json"))["layouts"] == ["000001_layout.png"]


def test_api_user_mistakes_come_back_as_one_line_messages(server, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(*generate_args(""), api_name="/generate")
    assert one_line(err).startswith("nothing to generate from")
    wrong = tmp_path / "wrong_colours.png"
    Image.fromarray(np.full((64, 64, 3), (120, 120, 120), np.uint8)).save(wrong)
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(*generate_args("a face", editor_value(wrong)), api_name="/generate")
    assert "not in the given palette" in one_line(err)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(gradio_client.handle_file(str(junk)), api_name="/upload_mask")
    assert "the uploaded mask" in one_line(err)


def test_api_edit_gives_before_and_after(server, tmp_path):
    from faceweave.data.unified import facesynth_seed
    from faceweave.synth import render

    sample = render(facesynth_seed("test"), 2, size=64, captions=1)
    photo = tmp_path / "photo.png"
    Image.fromarray(sample.image).save(photo)
    client = gradio_client.Client(server, verbose=False)
    parsed = client.predict(gradio_client.handle_file(str(photo)), api_name="/parse_photo")
    own = io.read_mask(parsed["background"])
    assert own.shape == (app.CANVAS, app.CANVAS) and (own == CLASS_ID["skin"]).any()
    edited = own.copy()
    edited[own == CLASS_ID["hair"]] = CLASS_ID["background"]
    painted = tmp_path / "edited.png"
    Image.fromarray(colorize_mask(edited)).save(painted)
    (before, after), meta, archive = client.predict(
        gradio_client.handle_file(str(photo)), editor_value(painted), "", 2, 1.0, False, *DONT_CARE,
        api_name="/edit")
    assert Image.open(before).size == Image.open(after).size == (64, 64)
    assert meta["edited_pixels"] > 0 and zipfile.ZipFile(archive).namelist()[:2] == ["before.png", "edited.png"]


@pytest.mark.slow
def test_a_burst_beyond_the_queue_is_refused_not_piled_up(models):
    demo, url = app.launch(port=app.free_port(), models=models, block=False, quiet=True,
                           max_concurrency=1, max_queue=1)
    try:
        client = gradio_client.Client(url, verbose=False)
        args = generate_args("a face", steps=4)

        def call(_):
            try:
                client.predict(*args, api_name="/generate")
                return "answered"
            except Exception as exc:  # noqa: BLE001 - sorted below
                return "refused" if "queue is full" in str(exc).lower() else f"error: {exc}"
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(call, range(6)))
    finally:
        demo.close()
    assert not [o for o in outcomes if o.startswith("error")], outcomes
    assert outcomes.count("answered") >= 1 and outcomes.count("refused") >= 1, outcomes


# ---------------------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------------------

def chromium_driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.chrome.service import Service

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER} "
                    "(Debian: apt-get install chromium chromium-driver; scripts/setup.sh test does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # no network here: without these, Chromium stalls on its background connections
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
                 "--window-size=1400,1150"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.slow
def test_browser_pick_example_type_prompt_generate(server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    screenshot_to = os.environ.get("FACEWEAVE_SCREENSHOT")
    steps = 20 if screenshot_to else 3                       # a docs picture shows finished faces
    driver = chromium_driver(tmp_path)
    try:
        driver.set_page_load_timeout(30)
        started = time.perf_counter()
        driver.get(server)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.ID, "fw-generate"))
        assert time.perf_counter() - started < 15, "the page waited on something (an external font or CDN?)"

        # a mistake shows as a message in the page, not a stack trace
        driver.find_element(By.ID, "fw-generate").click()
        toast = wait.until(lambda d: [e for e in d.find_elements(By.XPATH, "//*[contains(text(), "
                                                                 "'nothing to generate from')]")])
        assert toast and "Traceback" not in driver.page_source

        def by_text(css, text):
            return wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, css) if text in e.text])[0]

        by_text("#fw-examples label", "example: real woman").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fw-mask canvas"))
        time.sleep(1.0)                                       # the example reaches the canvas
        # paint over it: the brush (skin, the default class) across the top of the hair
        driver.find_element(By.CSS_SELECTOR, "#fw-mask button[aria-label='Brush']").click()
        canvas = max(driver.find_elements(By.CSS_SELECTOR, "#fw-mask canvas"), key=lambda c: c.size["width"])
        stroke = ActionChains(driver).move_to_element_with_offset(canvas, -50, -105).click_and_hold()
        for _ in range(20):
            stroke = stroke.move_by_offset(5, 0)
        stroke.release().perform()
        for elem_id, value in (("fw-steps", steps), ("fw-images", 4)):
            box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(str(value), Keys.TAB)
        driver.find_element(By.CSS_SELECTOR, "#fw-prompt textarea").send_keys("a smiling woman with blond hair")
        time.sleep(0.5)
        driver.find_element(By.ID, "fw-generate").click()
        WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fw-gallery img")) >= 4
                                         and d.find_elements(By.CSS_SELECTOR, "#fw-download a"))
        meta = driver.find_element(By.ID, "fw-meta").text
        assert '"steps"' in meta and '"000003.png"' in meta
        # the server got the example mask with the stroke painted in (not the example alone)
        example = Conditions(prompt="a smiling woman with blond hair",
                             mask=io.resize_mask(app.example_masks()["example: real woman"](), app.CANVAS))
        assert '"conditions"' in meta and example.digest() not in meta
        # the pictures in the gallery are decoded faces, not broken images
        sizes = driver.execute_script(
            "return [...document.querySelectorAll('#fw-gallery img')].map(i => i.naturalWidth)")
        assert sizes and all(s == 64 for s in sizes), sizes
        shot = tmp_path / "app.png"
        driver.save_screenshot(str(shot))
        if screenshot_to:
            shutil.copyfile(shot, screenshot_to)
    finally:
        driver.quit()
    assert Image.open(shot).size[0] >= 1000
