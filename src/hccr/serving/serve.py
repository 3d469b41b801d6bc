"""Serve a trained model as a local web page: draw a character, see what the model reads.

    hccr serve --model models/export/model.onnx        # or a .pt checkpoint
    # then open http://127.0.0.1:8000/

Options: `--host` (default 127.0.0.1, this machine only; `--host 0.0.0.0` opens it to every
interface, with no authentication: only on a network you trust), `--port` (8000),
`--top-k` (5), `--max-upload-mb` (8), `--workers` (images decoded and scored at once, 2),
`--threads` (CPU threads per image, 1), `--max-connections` (64; a request arriving while
that many connections are open, its own included, gets 503, so uploads held in memory stay
bounded), `--quiet` (no log line per request), `--metrics FILE` (the run's metrics JSON, for
the test accuracy on `/api/model`; default `reports/metrics/{model}/{size}.json` when it
exists).

The page and the API are described in `hccr.serving.serve_app`; every asset ships inside
the package, so it works on a machine with no network.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from hccr.errors import ConfigError, reports_errors

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, metavar="FILE", help="exported model (.onnx) or checkpoint (.pt)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--top-k", type=int, default=5, help="characters listed per answer (default 5)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest request body accepted (default 8 MB)")
    p.add_argument("--workers", type=int, default=2, help="images decoded and scored at once (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per image, PyTorch or onnxruntime (default 1: --workers images run side by side)",
    )
    p.add_argument("--metrics", default=None, metavar="FILE", help="the run's metrics JSON (test accuracy)")
    p.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="open connections at most; more get 503 (default 64: bounds the memory uploads can take)",
    )
    p.add_argument("--quiet", action="store_true", help="no log line per request (benchmarks)")
    return p


def build_app(args: argparse.Namespace):
    from hccr.serving.predict import load_predictor
    from hccr.serving.serve_app import create_app
    from hccr.serving.serve_facts import model_facts

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model, args.threads)
    # On loopback, answer only requests addressed to this machine (a web page elsewhere cannot
    # reach the API by pointing its own host name at 127.0.0.1).
    allowed = LOOPBACK_NAMES if is_loopback(args.host) else None
    return create_app(
        predictor,
        top_k=args.top_k,
        max_bytes=int(args.max_upload_mb * 1024 * 1024),
        workers=args.workers,
        facts=model_facts(predictor, args.metrics),
        allowed_hosts=allowed,
    )


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be 0-65535")
    if min(args.top_k, args.workers, args.threads, args.max_connections) < 1 or not args.max_upload_mb > 0:
        raise ConfigError("--top-k, --workers, --threads, --max-connections and --max-upload-mb must be positive")
    import uvicorn

    app = build_app(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the page", file=sys.stderr)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=not args.quiet,
        server_header=False,
        limit_concurrency=args.max_connections,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
