"""`hccr serve` in a real browser: Debian's headless Chromium draws the 15 numerals stroke by stroke.

A small CNN is trained here on 50 writers of the real archive and exported to ONNX; `hccr
serve` runs it as its own process on the loopback. Playwright drives the system Chromium (no
browser download): for each numeral it traces the synthetic generator's stroke skeletons
(`hccr.data.synthetic.strokes`) with pointer events on the page's canvas, the way a hand
would, then reads what the page shows. Checks: the page shows exactly what `/api/predict`
answers for the same canvas image; at least 12 of the 15 drawings are read correctly; undo
and upload give the answers the same image gets elsewhere (`hccr predict` on the file); a
finger (touch) and a stylus (pen) draw through the same pointer events.

Skipped, with the reason, where the playwright package or /usr/bin/chromium is missing
(`.ci/run` installs Chromium with apt-get). Set HCCR_SERVE_SCREENSHOT=docs/serve.png to keep
the screenshot (the README's picture is made this way).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from hccr.data.synthetic import strokes
from hccr.serving.predict import main as predict_main
from hccr.serving.preprocess import glyph_to_size, normalize
from test_predict import SMALL_CNN, read_archive, save_checkpoint, train_small_cnn

from helpers_data import CHARACTERS
from helpers_serve import ROOT, export_onnx_of, running_server

CHROMIUM = Path(os.environ.get("HCCR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TRAIN_WRITERS = 50
WRITER = 0  # the synthetic writer whose hand draws; its strokes are 8 px wide, the page's default
STEP = 4.0  # canvas pixels between pointer events along a stroke
MIN_CORRECT = 12

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} not found (Debian: apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _glyphs(table, handle, writers) -> tuple[np.ndarray, np.ndarray]:
    rows = table[table["suite_id"].isin(writers)]
    images = np.stack([np.asarray(Image.open(io.BytesIO(handle.read(n)))) for n in rows["name"]])
    return images, rows["code"].to_numpy() - 1


def _accuracy(model, images, labels, mean, std) -> float:
    sized = np.stack([glyph_to_size(g, SMALL_CNN["input_size"]) for g in images])
    with torch.inference_mode():
        return float((model(normalize(sized, mean, std)).argmax(1).numpy() == labels).mean())


@pytest.fixture(scope="module")
def real_model(real_archive, tmp_path_factory) -> dict[str, Path]:
    """A small CNN trained on the archive's first 50 writers, exported to ONNX as `hccr export` does.

    Its validation and test accuracy (5 held-out writers each) go into the checkpoint and a metrics file.
    """
    table, handle = read_archive(real_archive)
    writers = sorted(table["suite_id"].unique())
    images, labels = _glyphs(table, handle, writers[:TRAIN_WRITERS])
    started = time.perf_counter()
    model, mean, std = train_small_cnn(images, labels, SMALL_CNN, epochs=2)
    print(f"\ntrained the served CNN on {len(images)} real images in {time.perf_counter() - started:.1f} s")
    val = _accuracy(model, *_glyphs(table, handle, writers[-10:-5]), mean, std)
    test = _accuracy(model, *_glyphs(table, handle, writers[-5:]), mean, std)
    folder = tmp_path_factory.mktemp("serve_real")
    ckpt = save_checkpoint(folder / "checkpoint.pt", model, SMALL_CNN, mean, std, val_accuracy=val)
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps({"model": "cnn", "size": f"{TRAIN_WRITERS} writers", "test": {"accuracy": test}}))
    return {"onnx": export_onnx_of(ckpt, folder / "model.onnx"), "metrics": metrics, "test_accuracy": test}


@pytest.fixture(scope="module")
def page_url(real_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    with running_server(real_model["onnx"], log, "--metrics", str(real_model["metrics"])) as (url, _):
        yield url


def trace(page, box: dict, code: int) -> float:
    """Draw numeral `code` stroke by stroke; seconds from releasing the last stroke to its answer shown."""
    scale = box["width"]
    released = 0.0
    for stroke in strokes(code, WRITER, 0, 0):
        points = stroke * scale
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for start, end in itertools.pairwise(points):
            steps = max(1, int(np.ceil(np.linalg.norm(end - start) / (STEP * scale / 256))))
            for t in np.linspace(0, 1, steps + 1)[1:]:
                x, y = start + t * (end - start)
                page.mouse.move(box["x"] + x, box["y"] + y)
        released = time.perf_counter()
        page.mouse.up()
    wait_for_answer(page)
    return time.perf_counter() - released


def wait_for_answer(page) -> None:
    """Until the page shows the answer to its latest request (the page's `latest` counts them)."""
    page.wait_for_function(
        "n => result.dataset.seq === String(n) && result.dataset.state !== 'busy'",
        arg=page.evaluate("latest"),
        polling="raf",
        timeout=30_000,
    )


def shown(page) -> dict:
    """What the page shows, read from its elements."""
    return page.evaluate("""() => ({
        state: result.dataset.state,
        character: document.getElementById('character').textContent,
        value: document.getElementById('value').textContent,
        confidence: document.getElementById('confidence').textContent,
        top_k: [...document.querySelectorAll('#top-k li')].map(li => ({
            character: li.dataset.character, value: li.dataset.value, confidence: li.dataset.confidence,
            text: [...li.children].map(c => c.textContent).join('|')})),
        glyph: document.getElementById('glyph').getAttribute('src'),
        error: document.getElementById('error').textContent,
    })""")


def percent(p: float) -> str:
    return f"{100 * p:.1f} %"


def assert_page_shows(page_view: dict, answer: dict) -> None:
    assert page_view["state"] == "shown", page_view["error"]
    assert page_view["character"] == answer["character"]
    assert page_view["value"] == str(answer["value"])
    assert page_view["confidence"] == percent(answer["confidence"])
    assert len(page_view["top_k"]) == len(answer["top_k"]) == 5
    for row, want in zip(page_view["top_k"], answer["top_k"], strict=True):
        assert row["character"] == want["character"] and row["value"] == str(want["value"])
        assert float(row["confidence"]) == want["confidence"]  # the very number the API sent
        assert row["text"] == f"{want['character']}|{want['value']}||{percent(want['confidence'])}"
    assert page_view["glyph"] == answer["glyph"]  # the 64 x 64 image the model saw, byte for byte


def test_drawn_numerals_are_shown_as_the_api_answers_and_read_correctly(browser, page_url, real_model, tmp_path):
    page = browser.new_page(viewport={"width": 820, "height": 560})
    page.goto(page_url)
    page.wait_for_function("() => document.getElementById('model-facts').textContent.startsWith('model cnn')")
    facts = page.text_content("#model-facts")
    assert f"subset {TRAIN_WRITERS} writers" in facts
    assert f"test accuracy {percent(real_model['test_accuracy'])}" in facts
    box = page.locator("#pad").bounding_box()
    assert box["width"] == box["height"] == 256
    read, latencies, screenshot = [], [], tmp_path / "serve.png"
    for code in range(1, 16):
        page.click("#clear")
        latencies.append(trace(page, box, code))
        canvas = page.evaluate("pad.toDataURL('image/png')")
        answer = requests.post(f"{page_url}/api/predict", json={"image": canvas}, timeout=30).json()
        assert_page_shows(shown(page), answer)
        read.append(answer["character"])
        if CHARACTERS[code - 1] == "五":
            page.screenshot(path=str(screenshot))
    correct = sum(got == want for got, want in zip(read, CHARACTERS, strict=True))
    print(
        f"\ndrawn numerals read as {''.join(read)} (truth {CHARACTERS}): {correct}/15 correct; "
        f"last stroke to answer shown: median {1000 * np.median(latencies):.0f} ms, "
        f"max {1000 * max(latencies):.0f} ms (target 1 s; machine shared)"
    )
    if os.environ.get("HCCR_SERVE_SCREENSHOT"):
        shutil.copyfile(screenshot, ROOT / os.environ["HCCR_SERVE_SCREENSHOT"])
    assert Image.open(screenshot).size == (820, 560)
    assert correct >= MIN_CORRECT, f"read {''.join(read)} for {CHARACTERS}"
    page.close()


def test_undo_and_upload_give_the_same_answer_as_the_same_image_elsewhere(
    browser, page_url, real_model, tmp_path, capsys
):
    page = browser.new_page()
    page.goto(page_url)
    box = page.locator("#pad").bounding_box()
    keys = ("character", "top_k", "glyph")
    trace(page, box, 7)  # 六
    before, canvas = shown(page), page.evaluate("pad.toDataURL('image/png')")
    trace(page, box, 2)  # a stray 一 across it, then undo
    assert page.evaluate("pad.toDataURL('image/png')") != canvas
    page.click("#undo")
    wait_for_answer(page)
    assert page.evaluate("pad.toDataURL('image/png')") == canvas
    assert {k: shown(page)[k] for k in keys} == {k: before[k] for k in keys}

    # The same drawing as a file: uploaded through the page, and given to `hccr predict`.
    drawing = tmp_path / "drawing.png"
    drawing.write_bytes(base64.b64decode(canvas.split(",", 1)[1]))
    page.click("#clear")
    cleared = page.evaluate("latest")
    page.set_input_files("#file", str(drawing))
    page.wait_for_function("n => latest > n", arg=cleared)  # the upload's request is on its way
    wait_for_answer(page)
    uploaded = shown(page)
    page.close()
    assert {k: uploaded[k] for k in keys} == {k: before[k] for k in keys}
    assert predict_main([str(drawing), "--model", str(real_model["onnx"]), "--format", "json", "--top-k", "5"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]
    assert str(cli["value"]) == uploaded["value"]
    assert cli["character"] == uploaded["character"]
    assert [t["character"] for t in cli["top_k"]] == [row["character"] for row in uploaded["top_k"]]
    assert np.allclose(
        [t["confidence"] for t in cli["top_k"]], [float(r["confidence"]) for r in uploaded["top_k"]], atol=1e-6
    )


def trace_with(cdp, box: dict, code: int, kind: str) -> None:
    """Draw numeral `code` with a finger (`touch`) or a stylus (`pen`) through Chromium's input events."""
    for stroke in strokes(code, WRITER, 0, 0):
        points = [(box["x"] + x, box["y"] + y) for x, y in stroke * box["width"]]
        dense = [points[0]]
        for start, end in itertools.pairwise(points):
            steps = max(1, int(np.hypot(end[0] - start[0], end[1] - start[1]) // STEP))
            dense += [
                (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
                for t in np.linspace(0, 1, steps + 1)[1:]
            ]
        if kind == "touch":
            cdp.send(
                "Input.dispatchTouchEvent",
                {"type": "touchStart", "touchPoints": [{"x": dense[0][0], "y": dense[0][1]}]},
            )
            for x, y in dense[1:]:
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            pen = {"pointerType": "pen", "button": "left", "clickCount": 1}
            cdp.send(
                "Input.dispatchMouseEvent",
                {"type": "mousePressed", "x": dense[0][0], "y": dense[0][1], "buttons": 1, "force": 0.5, **pen},
            )
            for x, y in dense[1:]:
                cdp.send(
                    "Input.dispatchMouseEvent",
                    {"type": "mouseMoved", "x": x, "y": y, "buttons": 1, "force": 0.5, **pen},
                )
            cdp.send(
                "Input.dispatchMouseEvent",
                {"type": "mouseReleased", "x": dense[-1][0], "y": dense[-1][1], "buttons": 0, **pen},
            )


@pytest.mark.parametrize("kind,code", [("touch", 4), ("pen", 9)])
def test_touch_and_pen_draw_through_pointer_events(browser, page_url, kind, code):
    context = browser.new_context(has_touch=True)
    page = context.new_page()
    page.goto(page_url)
    page.evaluate("() => { window.seen = []; pad.addEventListener('pointerdown', e => seen.push(e.pointerType)); }")
    box = page.locator("#pad").bounding_box()
    trace_with(context.new_cdp_session(page), box, code, kind)
    wait_for_answer(page)
    assert set(page.evaluate("seen")) == {kind} and len(page.evaluate("seen")) == len(strokes(code, WRITER, 0, 0))
    canvas = page.evaluate("pad.toDataURL('image/png')")
    answer = requests.post(f"{page_url}/api/predict", json={"image": canvas}, timeout=30).json()
    assert_page_shows(shown(page), answer)  # 'shown', not an error: the strokes left ink on the canvas
    context.close()
