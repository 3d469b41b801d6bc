"""Requests/s and latency of `hccr serve`'s /api/predict on the loopback; prints figures, asserts nothing.

    python bench/bench_serve.py [--clients 1 4 8] [--requests 300] [--workers 2] [--threads 1]
        [--model FILE ...] [--smoke]

Without --model it builds the params.yaml `cnn` (64 px input; untrained: speed does not
depend on the weights), saves it as a checkpoint and exports it to ONNX as `hccr export`
does, then benchmarks both files. Each model runs in its own `hccr serve` process (127.0.0.1,
a free port, `--quiet`); N client threads, one keep-alive connection each, post what the
page posts: a 256 x 256 canvas drawing (black strokes on white, PNG) as a JSON data URL.
Each N runs `--requests` requests in all after a warm-up. Per model and N it prints
requests/s, client-side p50 / p99 latency, the server's own p50 / p99 (`timing_ms.total`)
and the server process's CPU time per request (Linux), which other load barely changes.
The clients run on the same cores as the server: on 2 cores, N > 1 measures both together.

Target (issue 16): p99 of one prediction under 50 ms on 2 cores with the exported CNN (N = 1).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_description, load_average, model_config  # noqa: E402

RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


def build_models(folder: Path, smoke: bool) -> list[Path]:
    """The params.yaml cnn (tiny widths with --smoke) as checkpoint.pt and model.onnx."""
    import torch

    from hccr.data.layout import CHINESE_MNIST
    from hccr.models import checkpoint, create
    from hccr.models.checkpoint import load_model
    from hccr.serving.export import export_onnx

    cfg = model_config("cnn")
    if smoke:
        cfg.update(width=[8, 16], convs_per_block=1, input_size=32)
    torch.manual_seed(0)
    model, _ = create("cnn", cfg, "none", num_classes=len(CHINESE_MNIST))
    ckpt = checkpoint.save(
        folder / "checkpoint.pt",
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=cfg["input_size"],
        normalize={"mean": 0.1, "std": 0.25},
        start="scratch",
        epoch=1,
        val_accuracy=0.0,
    )
    model, meta = load_model(ckpt, map_location="cpu")
    onnx = folder / "model.onnx"
    export_onnx(model, int(meta["input_size"]), meta, "bilinear", onnx)
    return [onnx, ckpt]


def canvas_request() -> bytes:
    """The JSON body the page sends for a drawn 五 (synthetic strokes, 8 px wide, 256 x 256)."""
    from PIL import Image, ImageDraw

    from hccr.data.synthetic import strokes

    image = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(image)
    for stroke in strokes(6, 0, 0, 0):
        draw.line([tuple(p) for p in (stroke * 256).tolist()], fill="black", width=8, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return json.dumps({"image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}).encode()


@contextmanager
def server(model: Path, workers: int, threads: int, log: Path):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hccr.serving.serve",
                "--model",
                str(model),
                "--port",
                "0",
                "--quiet",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not (match := RUNNING.search(log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hccr serve did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield match.group(1), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, body: bytes, clients: int, total: int) -> dict:
    """`total` requests from `clients` threads; latencies in ms and the wall time."""
    per_client = [total // clients + (i < total % clients) for i in range(clients)]
    client_ms: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def run(count: int) -> None:
        with requests.Session() as session:
            headers = {"Content-Type": "application/json"}
            session.post(f"{url}/api/predict", data=body, headers=headers, timeout=60)  # connect + warm
            start_gate.wait()
            for _ in range(count):
                began = time.perf_counter()
                response = session.post(f"{url}/api/predict", data=body, headers=headers, timeout=60)
                elapsed = 1000 * (time.perf_counter() - began)
                with lock:
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:200]}")
                    else:
                        client_ms.append(elapsed)
                        server_ms.append(response.json()["timing_ms"]["total"])

    threads = [threading.Thread(target=run, args=(n,)) for n in per_client]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return {"rps": len(client_ms) / wall, "client": np.asarray(client_ms), "server": np.asarray(server_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=None, help="served files (default: build the cnn, .onnx + .pt)")
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 8], help="concurrent clients N")
    parser.add_argument("--requests", type=int, default=300, help="requests per N (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="hccr serve --workers")
    parser.add_argument("--threads", type=int, default=1, help="hccr serve --threads (and OMP threads)")
    parser.add_argument("--smoke", action="store_true", help="a tiny cnn and 20 requests per N: checks the script")
    args = parser.parse_args()
    total = 20 if args.smoke else args.requests

    print(f"cpu: {cpu_description()}; load average before: {load_average()}")
    print(
        f"hccr serve --workers {args.workers} --threads {args.threads}; {total} requests per N; "
        "clients share the machine with the server"
    )
    body = canvas_request()
    with tempfile.TemporaryDirectory(prefix="hccr-bench-serve-") as tmp:
        models = [Path(m) for m in args.model] if args.model else build_models(Path(tmp), args.smoke)
        for model in models:
            kind = "onnx" if model.suffix.lower() == ".onnx" else "pytorch"
            with server(model, args.workers, args.threads, Path(tmp) / f"serve-{kind}.log") as (url, pid):
                for clients in args.clients:
                    cpu_before = cpu_seconds(pid)
                    figures = load(url, body, clients, total)
                    cpu_after = cpu_seconds(pid)
                    c50, c99 = np.percentile(figures["client"], [50, 99])
                    s50, s99 = np.percentile(figures["server"], [50, 99])
                    # CPU time per request barely depends on what else runs: the figure for a quiet machine.
                    served = total + clients  # each client's warm-up request too
                    cpu = "n/a" if cpu_before is None else f"{1000 * (cpu_after - cpu_before) / served:.1f} ms"
                    print(
                        f"{kind:<7} N={clients:<3} {figures['rps']:8.1f} req/s  latency p50 {c50:6.1f} ms  "
                        f"p99 {c99:6.1f} ms  (server p50 {s50:6.1f} ms  p99 {s99:6.1f} ms; CPU {cpu} per request)"
                    )
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
