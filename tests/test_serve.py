"""`hccr serve`: the API in process (answers, limits, errors), and a real server under a bounded load."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from starlette.testclient import TestClient

from hccr.cli import COMMANDS
from hccr.serving import serve
from hccr.serving.predict import load_predictor
from hccr.serving.predict import main as predict_main
from hccr.serving.preprocess import canonical_glyph, glyph_to_size, open_image
from hccr.serving.serve_app import ASSETS, create_app, read_asset
from test_predict import _png_header_only

from helpers_serve import (
    ROOT,
    data_url,
    decode_data_url,
    drawn_glyph,
    export_onnx_of,
    png_bytes,
    running_server,
    tiny_checkpoint,
)

ANSWER_KEYS = ("character", "value", "confidence", "top_k")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve_models")
    ckpt = tiny_checkpoint(folder / "checkpoint.pt")
    return {"pt": ckpt, "onnx": export_onnx_of(ckpt, folder / "model.onnx")}


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(load_predictor(models["pt"]), top_k=5))


def images(tmp_path: Path) -> dict[str, Path]:
    """Files a user might have: a drawing as PNG, a photo-like RGB JPEG, a dataset-format glyph."""
    drawn = tmp_path / "drawn.png"
    drawn_glyph(5).save(drawn)
    photo = tmp_path / "photo.jpg"
    drawn_glyph(11, side=300, width=10).convert("RGB").save(photo, quality=85)
    native = tmp_path / "native.png"
    Image.fromarray(255 - np.asarray(drawn_glyph(3, side=64, width=2).convert("L"))).save(native)
    return {"drawn": drawn, "photo": photo, "native": native}


def cli_answers(model: Path, paths: list[Path], capsys) -> dict[str, dict]:
    assert predict_main([*map(str, paths), "--model", str(model), "--top-k", "5", "--format", "json"]) == 0
    return {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}


@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_every_request_form_gives_hccr_predicts_answer(models, kind, tmp_path, capsys):
    client = TestClient(create_app(load_predictor(models[kind]), top_k=5))
    files = images(tmp_path)
    expected = cli_answers(models[kind], list(files.values()), capsys)
    for name, path in files.items():
        data = path.read_bytes()
        kind_header = "image/jpeg" if path.suffix == ".jpg" else "image/png"
        answers = [
            client.post("/api/predict", files={"image": (path.name, data, kind_header)}),
            client.post("/api/predict", json={"image": data_url(data, kind_header)}),
            client.post("/api/predict", data={"image": data_url(data, kind_header)}, files={"unused": ("x", b"")}),
            client.post("/api/predict", content=data, headers={"Content-Type": kind_header}),
        ]
        want = expected[path.name]
        for response in answers:
            assert response.status_code == 200, (name, response.text)
            got = response.json()
            assert got["character"] == want["character"] and got["value"] == want["value"], name
            assert [t["character"] for t in got["top_k"]] == [t["character"] for t in want["top_k"]]
            assert np.allclose(
                [t["confidence"] for t in got["top_k"]], [t["confidence"] for t in want["top_k"]], atol=1e-6
            )
            assert got["confidence"] == got["top_k"][0]["confidence"]
            assert set(got["timing_ms"]) == {"read", "preprocess", "model", "total"}
            assert all(v >= 0 for v in got["timing_ms"].values())


def test_shown_glyph_is_what_preprocessing_made(client, tmp_path):
    data = images(tmp_path)["photo"].read_bytes()
    answer = client.post("/api/predict", content=data, headers={"Content-Type": "image/jpeg"}).json()
    glyph = canonical_glyph(open_image(data, "photo"), "photo")
    shown = decode_data_url(answer["glyph"])
    assert shown.shape == (64, 64) and np.array_equal(shown, glyph)
    sized = decode_data_url(answer["model_input"])
    assert answer["input_size"] == 32 and np.array_equal(sized, glyph_to_size(glyph, 32))
    k3 = client.post("/api/predict?top_k=3", content=data, headers={"Content-Type": "image/jpeg"}).json()
    assert [t["character"] for t in k3["top_k"]] == [t["character"] for t in answer["top_k"][:3]]


def test_health_and_model_facts(models, tmp_path):
    # The layout `hccr export` writes: parity.json beside the model, the run's metrics under reports/.
    export = tmp_path / "models" / "export"
    export.mkdir(parents=True)
    onnx = export / "model.onnx"
    onnx.write_bytes(models["onnx"].read_bytes())
    (export / "parity.json").write_text(json.dumps({"model": "cnn", "size": "medium", "role": "test"}))
    metrics = tmp_path / "reports" / "metrics" / "cnn" / "medium.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"model": "cnn", "size": "medium", "test": {"accuracy": 0.9625}}))
    from hccr.serving.serve_facts import model_facts

    predictor = load_predictor(onnx)
    facts = model_facts(predictor, metrics_root=tmp_path / "reports" / "metrics")
    client = TestClient(create_app(predictor, facts=facts))
    assert client.get("/api/health").json()["status"] == "ok"
    facts = client.get("/api/model").json()
    assert facts["model"] == "cnn" and facts["size"] == "medium" and facts["start"] == "scratch"
    assert facts["test_accuracy"] == 0.9625 and facts["val_accuracy"] == 0.5 and facts["epoch"] == 3
    assert facts["format"] == "onnx" and facts["file_bytes"] == onnx.stat().st_size and facts["input_size"] == 32
    assert facts["metrics_file"] == str(metrics) and facts["framings"] == ["cell"]
    # Without the export's side files nothing is guessed.
    bare = TestClient(create_app(load_predictor(models["pt"]))).get("/api/model").json()
    assert bare["size"] is None and bare["test_accuracy"] is None and bare["format"] == "pytorch"


def test_page_and_assets_come_from_the_package_with_no_outside_address(client):
    for route, (name, kind) in ASSETS.items():
        response = client.get(route)
        assert response.status_code == 200 and response.content == read_asset(name)
        assert response.headers["content-type"] == kind
        assert "default-src 'self'" in response.headers["content-security-policy"]
        # No CDN, no font or script from elsewhere: the page must work with no network.
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", response.content), name
    page = client.get("/").text
    for asset in ("/app.js", "/app.css"):
        assert f'"{asset}"' in page
    for element in ('id="pad"', 'id="undo"', 'id="clear"', 'id="width"', 'id="file"', 'id="top-k"', 'id="glyph"'):
        assert element in page


BAD_REQUESTS = [  # (what, request kwargs, status, words the error must contain)
    ("text as image", dict(content=b"hello, not an image", headers={"Content-Type": "image/png"}), 400, "not an image"),
    ("empty body", dict(content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
    ("truncated png", "truncated", 400, "truncated"),
    ("blank page", "blank", 400, "no ink"),
    (
        "too many pixels",
        dict(content=_png_header_only(5000, 5000), headers={"Content-Type": "image/png"}),
        400,
        "too large",
    ),
    ("bad base64", dict(json={"image": "data:image/png;base64,@@@"}), 400, "base64"),
    ("not a data URL", dict(json={"image": "/etc/passwd"}), 400, "data URL"),
    ("data URL of text", dict(json={"image": "data:text/plain;base64,aGVsbG8="}), 400, "text/plain"),
    ("JSON without image", dict(json={"picture": 1}), 400, '"image"'),
    ("broken JSON", dict(content=b"{nope", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
    ("form without image", dict(data={"other": "1"}, files={"x": ("x.png", b"")}), 400, "no field `image`"),
    (
        "broken multipart",
        dict(content=b"--b\r\nzz", headers={"Content-Type": "multipart/form-data; boundary=b"}),
        400,
        "",
    ),
    ("unknown content type", dict(content=b"x", headers={"Content-Type": "text/plain"}), 400, "text/plain"),
    ("bad top_k", dict(params={"top_k": "0"}, content=b"x", headers={"Content-Type": "image/png"}), 400, "top_k"),
]


@pytest.mark.parametrize("what,request_kwargs,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_clear_error(client, what, request_kwargs, status, words):
    if request_kwargs == "truncated":
        data = png_bytes(drawn_glyph(4))
        request_kwargs = dict(content=data[: len(data) // 2], headers={"Content-Type": "image/png"})
    elif request_kwargs == "blank":
        request_kwargs = dict(content=png_bytes(Image.new("L", (256, 256), 255)), headers={"Content-Type": "image/png"})
    response = client.post("/api/predict", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_uploads_over_the_limit_get_413_declared_or_streamed(models):
    limit = 50_000
    client = TestClient(create_app(load_predictor(models["pt"]), max_bytes=limit))
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)))
    assert len(big) > limit
    declared = client.post("/api/predict", content=big, headers={"Content-Type": "image/png"})
    assert declared.status_code == 413 and "too large" in declared.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while the body arrives
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert streamed.status_code == 413 and f"over {limit} bytes" in streamed.json()["error"]
    as_form = client.post("/api/predict", files={"image": ("big.png", big, "image/png")})
    assert as_form.status_code == 413
    small = png_bytes(drawn_glyph(2, side=128, width=4))
    assert (
        len(small) < limit
        and client.post("/api/predict", content=small, headers={"Content-Type": "image/png"}).status_code == 200
    )


def test_no_path_from_a_request_reaches_the_file_system(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assets = [read_asset(name) for name, _ in ASSETS.values()]
    for path in (
        "/../pyproject.toml",
        "/static/../../pyproject.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/..",
        "/serve.py",
        "/static/app.js",
        "/index.html",
        "/api/../../etc/passwd",
        "/etc/passwd",
    ):
        response = client.get(path)  # the client may normalise `..` away: then it must land on a page asset
        assert response.status_code == 404 or response.content in assets, path
        assert b"[project]" not in response.content and b"root:" not in response.content
    # A file name from the client is only a label: nothing is written under it.
    data = png_bytes(drawn_glyph(6))
    response = client.post("/api/predict", files={"image": ("../../../tmp/evil.png", data, "image/png")})
    assert response.status_code == 200
    assert not list(tmp_path.rglob("*")) and not Path("/tmp/evil.png").exists()
    assert client.get("/api/predict").status_code == 405


def test_command_line_defaults_and_errors(models, capsys):
    assert COMMANDS["serve"] == "hccr.serving.serve"
    args = serve.build_parser().parse_args(["--model", "m.onnx"])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.2")
    assert serve.main(["--model", str(models["pt"].parent / "missing.onnx")]) == 2
    assert "missing.onnx: model file not found" in capsys.readouterr().err
    assert serve.main(["--model", str(models["pt"]), "--port", "70000"]) == 2
    assert serve.main(["--model", str(models["pt"]), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    # Served ONNX runs one sleeping intra-op thread per image, not a spinning pool per core.
    options = load_predictor(models["onnx"], threads=1).session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert serve.main(["--help"]) == 0
    # Bound to loopback, only requests addressed to this machine are answered (no DNS rebinding).
    app = serve.build_app(serve.build_parser().parse_args(["--model", str(models["pt"])]))
    local = TestClient(app, base_url="http://127.0.0.1:8000")
    assert local.get("/api/health").status_code == 200
    assert TestClient(app, base_url="http://localhost:8000").get("/api/health").status_code == 200
    assert TestClient(app, base_url="http://evil.example").get("/api/health").status_code == 400
    open_app = serve.build_app(serve.build_parser().parse_args(["--model", str(models["pt"]), "--host", "0.0.0.0"]))
    assert TestClient(open_app, base_url="http://10.1.2.3:8000").get("/api/health").status_code == 200


def _raw_exchange(host: str, port: int, payload: bytes, read: bool = True) -> bytes:
    """Send raw bytes on a fresh connection (for requests no HTTP client would make)."""
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(payload)
        if not read:
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.slow
def test_bounded_load_of_bad_big_and_concurrent_requests_leaves_the_server_answering(models, tmp_path):
    log = tmp_path / "serve.log"
    good = png_bytes(drawn_glyph(9))
    with running_server(models["onnx"], log, "--max-upload-mb", "0.25", "--workers", "2") as (url, proc):
        host, port = url.removeprefix("http://").split(":")
        port = int(port)
        reference = requests.post(f"{url}/api/predict", data=good, headers={"Content-Type": "image/png"}, timeout=30)
        assert reference.status_code == 200
        rng = random.Random(0)
        kinds = {
            "good": lambda s: s.post(f"{url}/api/predict", data=good, headers={"Content-Type": "image/png"}),
            "garbage": lambda s: s.post(
                f"{url}/api/predict", data=rng.randbytes(rng.randint(0, 5000)), headers={"Content-Type": "image/png"}
            ),
            "truncated": lambda s: s.post(  # at least 5 bytes short: losing only IEND's checksum loses nothing
                f"{url}/api/predict", data=good[: rng.randint(1, len(good) - 5)], headers={"Content-Type": "image/png"}
            ),
            "oversized": lambda s: s.post(
                f"{url}/api/predict", data=b"\0" * 400_000, headers={"Content-Type": "image/png"}
            ),
            "bomb header": lambda s: s.post(
                f"{url}/api/predict", data=_png_header_only(60_000, 60_000), headers={"Content-Type": "image/png"}
            ),
            "bad json": lambda s: s.post(
                f"{url}/api/predict", data=b'{"image": 12', headers={"Content-Type": "application/json"}
            ),
            "bad form": lambda s: s.post(
                f"{url}/api/predict",
                data=b"--q\r\n\r\n" * 50,
                headers={"Content-Type": "multipart/form-data; boundary=q"},
            ),
        }
        raw = [  # malformed HTTP itself
            b"GARBAGE\r\n\r\n",
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n"
            b"Content-Type: image/png\r\n\r\nabc",
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: image/png\r\n\r\nZZZ\r\n",
        ]
        statuses: list[int] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(worker: int) -> None:
            with requests.Session() as session:
                for i in range(12):  # bounded: 12 requests per client
                    name = list(kinds)[(worker + i) % len(kinds)]
                    try:
                        response = kinds[name](session)
                        if name == "good":
                            ok = response.status_code == 200 and "character" in response.json()
                        else:
                            ok = response.status_code in (400, 413) and bool(response.json()["error"])
                        with lock:
                            statuses.append(response.status_code)
                            if not ok:
                                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
                    except (requests.RequestException, ValueError) as exc:
                        with lock:
                            failures.append(f"{name}: {type(exc).__name__}: {exc}")
                for payload in raw:
                    try:
                        _raw_exchange(host, port, payload, read=worker % 2 == 0)
                    except OSError:
                        pass  # the server may close on us: what matters is that it keeps serving

        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        assert not any(thread.is_alive() for thread in threads), "load clients did not finish"
        assert proc.poll() is None, log.read_text()[-3000:]
        assert not failures, failures[:5]
        assert len(statuses) == 8 * 12
        assert statuses.count(200) == sum((w + i) % len(kinds) == 0 for w in range(8) for i in range(12))
        health = requests.get(f"{url}/api/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        after = requests.post(f"{url}/api/predict", data=good, headers={"Content-Type": "image/png"}, timeout=30)
        assert after.status_code == 200
        assert {k: after.json()[k] for k in ANSWER_KEYS} == {k: reference.json()[k] for k in ANSWER_KEYS}


@pytest.mark.slow
def test_bench_serve_smoke_prints_rate_and_latencies_for_both_formats():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "bench/bench_serve.py", "--smoke", "--clients", "1", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    number = r"([0-9]+\.[0-9])"
    rows = re.findall(
        rf"^(onnx|pytorch) +N=(\d+) +{number} req/s +latency p50 +{number} ms +p99 +{number} ms +"
        rf"\(server p50 +{number} ms +p99 +{number} ms; CPU {number} ms per request\)$",
        proc.stdout,
        flags=re.M,
    )
    assert [(kind, n) for kind, n, *_ in rows] == [("onnx", "1"), ("onnx", "2"), ("pytorch", "1"), ("pytorch", "2")]
    for _, _, rps, p50, p99, s50, s99, cpu in rows:
        rps, p50, p99, s50, s99, cpu = map(float, (rps, p50, p99, s50, s99, cpu))
        assert rps > 0 and 0 < p50 <= p99 and 0 < s50 <= s99 and cpu > 0
        assert s50 <= p50  # the server's own time is part of what the client waits for


@pytest.mark.slow
def test_connections_over_the_limit_get_503_and_the_server_recovers(models, tmp_path):
    # uvicorn counts the connection asking too: with 3, two held uploads leave no room for a third.
    with running_server(models["onnx"], tmp_path / "serve.log", "--max-connections", "3") as (url, proc):
        host, port = url.removeprefix("http://").split(":")
        held = []
        try:
            for _ in range(2):  # two uploads that never finish sending their body
                sock = socket.create_connection((host, int(port)), timeout=20)
                sock.sendall(
                    b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                    b"Content-Length: 100000\r\n\r\n" + b"\0" * 1000
                )
                held.append(sock)
                time.sleep(0.5)
            refused = requests.get(f"{url}/api/health", timeout=10)
            assert refused.status_code == 503
            assert "Exceeded concurrency limit" in (tmp_path / "serve.log").read_text()
            assert (tmp_path / "serve.log").read_text().count(" 503 ") == 1  # the held uploads were let in
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 20
        while (status := requests.get(f"{url}/api/health", timeout=10).status_code) != 200:
            assert time.monotonic() < deadline, f"still {status} after the held connections closed"
            time.sleep(0.2)
        assert proc.poll() is None
