"""Training and inference speed, peak memory and size of every model at its resolution.

    python bench/bench_models.py [--models efficientnet@64,inception_gru@299,inception_gru@75,cnn@64]
        [--device auto|cpu|cuda] [--threads N] [--train-batch 32] [--infer-batch 128]
        [--warmup 2] [--steps 5] [--budget 30] [--variants fp32,fp32-cl,bf16,bf16-cl,bf16-cl-compile]
        [--json OUT] [--smoke]

Each model runs in a fresh subprocess, so its peak memory is its own: on CPU the peak RSS
of that process (`resource.getrusage`, with the RSS after imports shown as the baseline), on
CUDA `torch.cuda.max_memory_allocated` per variant. Training = forward + backward +
optimizer step as `hccr.training.train` does it (batch 32, every layer trainable, the params.yaml
optimizer); inference = eval + no_grad (batch 128). Timing stops after `--steps` steps or
`--budget` seconds, whichever comes first, after `--warmup` untimed steps. Also prints the
forward GFLOP per image (torch.utils.flop_counter), the input for GPU estimates.
Variants: `fp32`, `fp32-cl` (float32 + channels_last: hccr.training.train's CPU path), `bf16` (bf16
autocast), `bf16-cl` (bf16 autocast + channels_last: the CUDA path, and the CPU path with
`cpu_precision: bfloat16`), `bf16-cl-compile` (the same under torch.compile); default
fp32-cl on CPU; fp32, bf16-cl and bf16-cl-compile on CUDA.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

DEFAULT_MODELS = "efficientnet@64,inception_gru@299,inception_gru@75,cnn@64"
VARIANTS = ("fp32", "fp32-cl", "bf16", "bf16-cl", "bf16-cl-compile")


def parse_spec(spec: str) -> tuple[str, int]:
    name, _, size = spec.partition("@")
    if not size:
        size = str(_common.model_config(name)["input_size"])
    return name, int(size)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_gflop(model, size: int, device) -> float | None:
    """Forward FLOPs of one image (multiply-add = 2 FLOPs), counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, 1, size, size, device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    except Exception:  # noqa: BLE001 - a counter gap must not sink the speed figures
        return None
    return counter.get_total_flops() / 1e9


def ops_per_step(model, size: int) -> int | None:
    """ATen ops one forward + backward dispatches (batch 2, CPU): ~ the kernels a GPU step launches.

    Small images on a big GPU are launch-bound, not FLOP-bound: this count times the per-op
    overhead (a few microseconds in eager mode) is the floor of a training step's time.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    model.train()
    x = torch.randn(2, 1, size, size)
    try:
        with Count() as counter:
            torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    except Exception:  # noqa: BLE001 - an op the counting mode cannot replay: no figure, no failure
        return None
    model.zero_grad(set_to_none=True)
    return counter.ops


def worker(args: argparse.Namespace) -> dict:
    """One model, every variant, in this (fresh) process."""
    import torch

    from hccr.data.layout import CHINESE_MNIST
    from hccr.models import count_parameters, create

    threads = _common.set_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name, size = parse_spec(args.worker)
    cfg = _common.model_config(name, size)
    baseline_rss = peak_rss_mb()
    generator = torch.Generator().manual_seed(0)
    train_x = torch.randn(args.train_batch, 1, size, size, generator=generator).to(device)
    train_y = torch.randint(0, 15, (args.train_batch,), generator=generator).to(device)
    infer_x = torch.randn(args.infer_batch, 1, size, size, generator=generator).to(device)

    result: dict = {
        "model": name,
        "size": size,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": threads,
        "train_batch": args.train_batch,
        "infer_batch": args.infer_batch,
        "baseline_rss_mb": round(baseline_rss, 1),
        "variants": [],
    }
    for variant in args.variants:
        torch.manual_seed(0)
        model, start = create(name, cfg, pretrained="none", num_classes=len(CHINESE_MNIST))
        total, _ = count_parameters(model)
        result["parameters"] = int(total)
        if "gflop_forward" not in result:
            result["gflop_forward"] = forward_gflop(model, size, "cpu")
            result["ops_per_train_step"] = ops_per_step(model, size)
        amp = torch.bfloat16 if variant.startswith("bf16") else None
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step = _common.TrainStep(
            model,
            _common.model_settings(name, cfg),
            device,
            amp=amp,
            channels_last="-cl" in variant,
            compile=variant.endswith("compile"),
        )
        row: dict = {"variant": variant, "start": start}
        try:
            train_speed, train_steps, _ = _common.timed_loop(
                functools.partial(step.train, train_x, train_y),
                warmup=args.warmup,
                steps=args.steps,
                budget_s=args.budget,
                device=device,
            )
            infer_speed, infer_steps, _ = _common.timed_loop(
                functools.partial(step.infer, infer_x),
                warmup=max(1, args.warmup // 2),
                steps=max(1, args.steps // 2),
                budget_s=args.budget,
                device=device,
            )
        except Exception as err:  # noqa: BLE001 - e.g. torch.compile without a compiler: report, go on
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
        else:
            row.update(
                train_images_per_s=round(train_speed, 2),
                train_steps=train_steps,
                infer_images_per_s=round(infer_speed, 2),
                infer_steps=infer_steps,
            )
        if cuda:
            row["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            row["memory_kind"] = "cuda max_memory_allocated"
        else:
            row["peak_memory_mb"] = round(peak_rss_mb(), 1)
            row["memory_kind"] = "process peak RSS"
        result["variants"].append(row)
        del step, model
    return result


def run_worker(spec: str, args: argparse.Namespace) -> dict:
    """Run one model in a fresh interpreter and read back its JSON result."""
    with tempfile.TemporaryDirectory(prefix="hccr-bench-models-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            spec,
            "--result-file",
            str(out),
            "--device",
            args.device,
            "--train-batch",
            str(args.train_batch),
            "--infer-batch",
            str(args.infer_batch),
            "--warmup",
            str(args.warmup),
            "--steps",
            str(args.steps),
            "--budget",
            str(args.budget),
            "--variants",
            ",".join(args.variants),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            name, size = parse_spec(spec)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {
                "model": name,
                "size": size,
                "error": f"worker exit {proc.returncode}: {tail[0]}"[:300],
                "variants": [],
            }
        return json.loads(out.read_text(encoding="utf-8"))


def print_header() -> None:
    columns = (
        f"{'model':<14}{'px':>5} {'variant':<16}{'params':>9}{'GFLOP/img':>10}{'ops/step':>9}{'train img/s':>13}"
        f"{'infer img/s':>13}{'peak MB':>10}  memory"
    )
    print(columns)
    print("-" * len(columns), flush=True)


def print_rows(results: list[dict]) -> None:
    """Table rows of finished models (printed as each finishes, so a timeout keeps what ran)."""
    for result in results:
        if "error" in result:
            print(f"{result['model']:<14}{result['size']:>5} {'-':<16} {result['error']}")
            continue
        gflop = result.get("gflop_forward")
        ops = result.get("ops_per_train_step")
        for row in result["variants"]:
            head = (
                f"{result['model']:<14}{result['size']:>5} {row['variant']:<16}{result['parameters'] / 1e6:>8.2f}M"
                f"{(f'{gflop:.3f}' if gflop is not None else 'n/a'):>10}{(ops if ops is not None else 'n/a'):>9}"
            )
            if "error" in row:
                print(f"{head}  {row['error']}")
                continue
            print(
                f"{head}{row['train_images_per_s']:>13.1f}{row['infer_images_per_s']:>13.1f}"
                f"{row['peak_memory_mb']:>10.0f}  {row['memory_kind']}"
                + (f" (after imports {result['baseline_rss_mb']:.0f})" if row["memory_kind"].endswith("RSS") else "")
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma list of model@px (default {DEFAULT_MODELS})",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: all usable cores)",
    )
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (inference: half)")
    parser.add_argument("--budget", type=float, default=30.0, help="max timed seconds per measurement")
    parser.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="cnn only, tiny batches, one step (for the tests)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = args.device.startswith("cuda")
    if args.variants is None:
        args.variants = "fp32,bf16-cl,bf16-cl-compile" if cuda else "fp32-cl"
    args.variants = [v.strip() for v in str(args.variants).split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        print(
            f"error: --variants: unknown {unknown}; known: {', '.join(VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    if args.smoke:
        args.models = args.models or "cnn@32"
        args.train_batch, args.infer_batch = (
            min(args.train_batch, 4),
            min(args.infer_batch, 8),
        )
        args.warmup, args.steps = 0, 1

    if args.worker:  # the child: one model, result as JSON
        Path(args.result_file).write_text(json.dumps(worker(args)), encoding="utf-8")
        return 0

    specs = [s.strip() for s in (args.models or DEFAULT_MODELS).split(",") if s.strip()]
    _common.header(
        "models: training / inference speed, peak memory, parameters",
        {
            "device": args.device,
            "threads": str(args.threads),
            "variants": ", ".join(args.variants),
            "train batch": f"{args.train_batch} (forward+backward+optimizer step, all layers trainable)",
            "infer batch": f"{args.infer_batch} (eval, no_grad)",
            "timing": f"{args.warmup} warm-up, up to {args.steps} timed steps or {args.budget:g} s",
        },
    )
    from hccr.atomic import write_json

    results = []
    print_header()
    for spec in specs:
        results.append(run_worker(spec, args))
        print_rows(results[-1:])
        sys.stdout.flush()
        print(f"# done {spec} (load average {_common.load_average()})", file=sys.stderr)
        if args.json:  # after every model, so a run cut short still leaves its figures
            write_json(
                args.json,
                {"device": args.device, "threads": args.threads, "results": results},
            )
    print(f"# load average at end (1/5/15 min): {_common.load_average()}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
