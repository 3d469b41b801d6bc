"""`hccr serve` test helpers: small models in both formats, a real server on the loopback, drawn images."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hccr.data.layout import CHINESE_MNIST
from hccr.models import checkpoint, create

ROOT = Path(__file__).resolve().parents[1]
TINY_CNN = {
    "arch": "cnn",
    "scheme": "holdout",
    "width": [8, 16, 16],
    "convs_per_block": 1,
    "dropout": 0.1,
    "input_size": 32,
    "in_chans": 1,
}
RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


def save_untrained(path: Path, model: torch.nn.Module, name: str, config: dict, normalize: dict) -> Path:
    """`model` as a Chinese MNIST checkpoint from scratch (epoch 3, validation accuracy 0.5)."""
    return checkpoint.save(
        path,
        classes=CHINESE_MNIST,
        model_name=name,
        config=config,
        state_dict=model.eval().state_dict(),
        input_size=config["input_size"],
        normalize=normalize,
        start="scratch",
        epoch=3,
        val_accuracy=0.5,
    )


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised CNN checkpoint: answers are arbitrary but deterministic."""
    torch.manual_seed(seed)
    model, _ = create("cnn", TINY_CNN, "none", num_classes=len(CHINESE_MNIST))
    return save_untrained(path, model, "cnn", TINY_CNN, {"mean": 0.05, "std": 0.15})


def export_onnx_of(ckpt: Path, out: Path) -> Path:
    """The checkpoint as `hccr export` writes it: ONNX with softmax and hccr.* metadata."""
    from hccr.models.checkpoint import load_model
    from hccr.serving.export import export_onnx

    model, meta = load_model(ckpt, map_location="cpu")
    export_onnx(model, int(meta["input_size"]), meta, meta.get("resize_filter", "bilinear"), out)
    for leftover in out.parent.glob(out.name + ".*"):
        leftover.unlink()
    return out


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode("ascii")


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def drawn_glyph(code: int = 2, side: int = 256, width: int = 8, writer: int = 0) -> Image.Image:
    """A synthetic numeral drawn like the page draws it: black strokes on a white square."""
    from hccr.data.synthetic import strokes

    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for stroke in strokes(code, writer, 0, 0):
        points = [tuple(p) for p in (stroke * side).tolist()]
        draw.line(points, fill="black", width=width, joint="curve")
    return image


@contextlib.contextmanager
def running_server(model: Path, log: Path, *args: str, timeout: float = 90.0):
    """`hccr serve` as its own process on 127.0.0.1 (a free port); yields its base URL, stops it after."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hccr.serving.serve", "--model", str(model), "--port", "0", "--threads", "1", *args],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            match = RUNNING.search(log.read_text(errors="replace"))
            if match:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"hccr serve did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield match.group(1), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
