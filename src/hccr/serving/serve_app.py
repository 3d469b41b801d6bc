"""The `hccr serve` web app (Starlette): a page to draw on, and a JSON API over `hccr predict`'s path.

Routes
- `GET /`, `/app.js`, `/app.css`: the drawing page. The three files ship inside the package
  (`hccr/serving/static/`) and are read once at start: no request path ever reaches the file
  system, and the page's Content-Security-Policy allows nothing but this server.
- `GET /api/health`: `{"status": "ok", ...}`.
- `GET /api/model`: the model card's facts (`hccr.serving.serve_facts`).
- `POST /api/predict[?top_k=K]`: one image, as
  - `multipart/form-data` with a field `image` (a file, or a data URL as text),
  - JSON `{"image": "data:image/png;base64,..."}`, or
  - the raw bytes, with an `image/*` or `application/octet-stream` Content-Type.
  The answer: `character`, `value`, `confidence`, `top_k` (character, value, confidence),
  `glyph` (the 64x64 glyph preprocessing made, PNG data URL), `model_input` (what the model
  saw at its input size), `input_size` and `timing_ms`.

The image goes through `Predictor.prepare` and `Predictor.top_k`, the code `hccr predict`
runs, so a file gives the same answer here and on the command line.

Limits: a body over `max_bytes` gets 413 (the declared Content-Length is checked first, then
the bytes as they arrive); anything that is not one readable image of at most `max_pixels`
gets 400 with the reason; an unexpected failure gets 500 and the server goes on. At most
`workers` images are decoded and scored at once, so memory stays bounded under load.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import time
from importlib import resources

import anyio
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hccr.errors import HccrError
from hccr.serving.predict import Predictor
from hccr.serving.serve_facts import model_facts

LOG = logging.getLogger("hccr.serve")
MAX_BYTES = 8 * 1024 * 1024
# Lower than `hccr predict`'s 50 MP: a server decodes several images at once.
MAX_PIXELS = 16_000_000
ASSETS = {  # route -> (file in hccr/serving/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
RAW_TYPES = ("image/", "application/octet-stream")
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*);base64,(?P<data>.*)$", re.S)


class BadRequest(Exception):
    """A request the API refuses; `status` is the HTTP code, the message says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def read_asset(name: str) -> bytes:
    return resources.files("hccr.serving").joinpath("static", name).read_bytes()


def decode_data_url(text: str) -> bytes:
    """The bytes of a base64 `data:` URL (the form a canvas's toDataURL gives)."""
    match = DATA_URL.match(text.strip())
    if not match:
        raise BadRequest("image: expected a base64 data URL (data:image/png;base64,...)")
    kind = match.group("type")
    if kind and not kind.startswith("image/"):
        raise BadRequest(f"image: data URL holds {kind}, not an image")
    try:
        return base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"image: data URL is not valid base64 ({exc})") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) one larger than `max_bytes` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > max_bytes:
            raise BadRequest(f"upload too large ({int(declared)} bytes; limit {max_bytes})", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BadRequest(f"upload too large (over {max_bytes} bytes)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def image_bytes(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """(image bytes, a label for messages) from any of the three request forms."""
    body = await read_body(request, max_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":

        async def replay() -> dict:  # the body is already read (and bounded): hand it to the form parser
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=4, max_part_size=max_bytes)
        try:
            field = form.get("image")
            if field is None:
                raise BadRequest("multipart form has no field `image`")
            if isinstance(field, str):
                return decode_data_url(field), "image"
            name = field.filename or "upload"
            return await field.read(), name.rsplit("/", 1)[-1][:100]
        finally:
            await form.close()
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON ({exc})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise BadRequest('JSON body must be an object with "image": a data URL string')
        return decode_data_url(payload["image"]), "image"
    if kind.startswith(RAW_TYPES):
        return body, "upload"
    raise BadRequest(
        f"unsupported Content-Type {kind or '(none)'!r}: send multipart/form-data (field image), "
        'application/json ({"image": data URL}) or the image bytes as image/*'
    )


def png_data_url(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def predict_image(predictor: Predictor, data: bytes, label: str, top_k: int, max_pixels: int) -> dict:
    """The JSON answer for one image (runs in a worker thread)."""
    started = time.perf_counter()
    glyph, sized = predictor.prepare(data, label, max_pixels)
    prepared = time.perf_counter()
    (ranked,) = predictor.top_k(sized[None], top_k)
    scored = time.perf_counter()
    character, confidence = ranked[0]
    return {
        "character": character,
        "value": predictor.classes.value_of(character),
        "confidence": confidence,
        "top_k": [{"character": c, "value": predictor.classes.value_of(c), "confidence": p} for c, p in ranked],
        "glyph": png_data_url(glyph),
        "model_input": png_data_url(np.hstack(list(sized))),  # one panel per framing, side by side
        "input_size": predictor.input_size,
        "framings": list(predictor.framing_names),
        "timing_ms": {"preprocess": 1000 * (prepared - started), "model": 1000 * (scored - prepared)},
    }


def create_app(
    predictor: Predictor,
    *,
    top_k: int = 5,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    workers: int = 2,
    facts: dict | None = None,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The app for one loaded model; `allowed_hosts` (Host header names) guards against DNS rebinding."""
    assets = {route: (read_asset(name), kind) for route, (name, kind) in ASSETS.items()}
    facts = facts if facts is not None else model_facts(predictor)
    limiter = anyio.CapacityLimiter(max(1, workers))
    default_k = max(1, min(top_k, len(predictor.characters)))
    # One forward pass now: the first drawing should not pay for lazy initialisation.
    size = predictor.input_size
    predictor.top_k(np.zeros((1, len(predictor.framings), size, size), dtype=np.uint8), 1)

    async def asset(request: Request) -> Response:
        content, kind = assets[request.url.path]
        return Response(content, media_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": facts.get("file"), "busy": limiter.borrowed_tokens})

    async def model(request: Request) -> JSONResponse:
        return JSONResponse(facts)

    async def predict(request: Request) -> JSONResponse:
        received = time.perf_counter()
        try:
            k = request.query_params.get("top_k", str(default_k))
            if not k.isdigit() or not 1 <= int(k) <= len(predictor.characters):
                raise BadRequest(f"top_k must be a whole number from 1 to {len(predictor.characters)}")
            data, label = await image_bytes(request, max_bytes)
            read = time.perf_counter()
            answer = await anyio.to_thread.run_sync(
                predict_image, predictor, data, label, int(k), max_pixels, limiter=limiter
            )
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except HccrError as exc:  # not an image, broken, too many pixels, no ink...
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            return Response(status_code=400)
        answer["timing_ms"]["read"] = 1000 * (read - received)
        answer["timing_ms"]["total"] = 1000 * (time.perf_counter() - received)
        return JSONResponse(answer)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    routes = [Route(path, asset, methods=["GET", "HEAD"]) for path in assets]
    routes += [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/model", model, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
