"""Shared pieces of the bench scripts: paths, params, test data, the training step they time.

The step is `hccr.training.step.train_step` with the optimizer of `build_optimizer`, the very
code `hccr.training.train` runs, so the figures are those of the real training loop minus its
bookkeeping.
"""

from __future__ import annotations

import copy
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "chinese-mnist.zip"
QUICK_PARAMS = ROOT / "workflow" / "profiles" / "quick" / "params.yaml"

# The study's augmentation (params.yaml model.*.augment), used by every loader variant.
AUGMENT = {
    "enabled": True,
    "degrees": 8.0,
    "translate": 0.08,
    "scale": 0.1,
    "shear": 5.0,
}


def default_archive() -> str:
    return os.environ.get("HCCR_REAL_DATA", str(DEFAULT_ARCHIVE))


def load_params(quick: bool = False) -> dict:
    """params.yaml, optionally with the quick profile's overrides merged over it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    if quick and QUICK_PARAMS.exists():
        _merge(params, yaml.safe_load(QUICK_PARAMS.read_text(encoding="utf-8")) or {})
    return params


def _merge(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def model_config(name: str, size: int | None = None, params: dict | None = None) -> dict:
    """The model's params.yaml block (a copy), at `size` px when given."""
    params = load_params() if params is None else params
    cfg = copy.deepcopy(params["model"][name])
    if size is not None:
        cfg["input_size"] = int(size)
    return cfg


def model_settings(name: str, cfg: dict):
    """The block as `hccr.config.ModelSettings` (checked by the schema, defaults filled in)."""
    from hccr.config import model_settings as typed

    return typed(name, cfg)


def cpu_description() -> str:
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {usable} usable cores"


def load_average() -> str:
    """The 1/5/15-minute load: how much other work competed for the cores during a bench."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass
class Dataset:
    raw: Path  # Kaggle layout: chinese_mnist.csv + data/data/*.jpg
    table: object  # the index DataFrame (hccr.data.index.build_index)
    images: np.ndarray  # (N, 64, 64) uint8, row i = index id i
    source: str


@contextmanager
def prepared_data(
    archive: str | None,
    smoke: bool,
    workdir: Path | None = None,
    synthetic_writers: int = 0,
) -> Iterator[Dataset]:
    """Raw folder, index and decoded 64 px array in a temp dir: from the archive, or synthetic
    (`smoke`: 2 writers x 3 samples; `synthetic_writers`: that many writers x 10 samples)."""
    from hccr.data.index import build_index
    from hccr.data.resize import decode_native

    with tempfile.TemporaryDirectory(prefix="hccr-bench-", dir=workdir) as tmp:
        raw = Path(tmp) / "raw"
        if smoke or synthetic_writers:
            from hccr.data.synthetic import generate

            writers, samples = (2, 3) if smoke else (int(synthetic_writers), 10)
            generate(raw, writers=writers, samples_per_writer=samples, seed=0, progress=False)
            source = f"synthetic ({writers} writers x {samples} samples x 15 classes)"
        else:
            from hccr.data.fetch import fetch
            from hccr.errors import DataError

            if archive is None or not Path(archive).exists():
                raise DataError(f"{archive}: archive not found (give --archive PATH or use --smoke)")
            fetch(str(archive), raw, progress=False)
            source = str(Path(archive).resolve())
        table = build_index(raw)
        images = decode_native([raw / p for p in table["path"]], progress=False)
        yield Dataset(raw=raw, table=table, images=images, source=source)


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """The array at `size` px (bilinear, as hccr.data.resize does); unchanged at the native size."""
    if size == images.shape[1]:
        return images
    from PIL import Image

    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image, mode="L").resize((size, size), Image.Resampling.BILINEAR))
    return out


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_loop(step: Callable[[], int], *, warmup: int, steps: int, budget_s: float, device) -> tuple[float, int, int]:
    """Run `step` (returns images done) `warmup` times, then time up to `steps` calls.

    Timing stops early once `budget_s` seconds have passed (at least one timed call), so a
    299 px model on two cores does not hold the bench for minutes. Returns
    (images per second, timed calls, images timed).
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    done = images = 0
    start = time.perf_counter()
    while done < steps:
        images += step()
        done += 1
        if time.perf_counter() - start > budget_s:
            break
    synchronize(device)
    seconds = time.perf_counter() - start
    return images / seconds, done, images


class TrainStep:
    """One optimisation step of `hccr.training.train`'s loop for a model on given batches.

    `settings`: the model's `hccr.config.ModelSettings` (optimizer, first phase's lr, label
    smoothing). `amp`: autocast dtype (None = float32); `channels_last` as on CUDA; `compile`
    wraps the network in `torch.compile`. Everything trains (freeze none), the costliest phase.
    """

    def __init__(
        self,
        model,
        settings,
        device,
        *,
        amp=None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        import torch
        from torch import nn

        from hccr.training.step import build_optimizer

        self.device = torch.device(device)
        self.model = model.to(self.device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.amp = amp
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            params, settings.optimizer, settings.phases[0].lr, fused=self.device.type == "cuda"
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.net = torch.compile(self.model) if compile else self.model

    def _autocast(self):
        import contextlib

        import torch

        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def train(self, x, y) -> int:
        from hccr.training.step import train_step

        self.net.train()
        train_step(
            self.net, self.optimizer, self.criterion, x, y, autocast=self._autocast(), channels_last=self.channels_last
        )
        return int(y.shape[0])

    def infer(self, x) -> int:
        import torch

        self.net.eval()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), self._autocast():
            self.net(x)
        return int(x.shape[0])


def set_threads(threads: int | None) -> int:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def header(title: str, extra: dict[str, str] | None = None) -> None:
    import torch

    print(f"# {title}")
    print(f"# python {sys.version.split()[0]}, torch {torch.__version__}, cpu: {cpu_description()}")
    if torch.cuda.is_available():
        print(f"# cuda: {torch.cuda.get_device_name(0)}")
    print(f"# load average at start (1/5/15 min): {load_average()}")
    for key, value in (extra or {}).items():
        print(f"# {key}: {value}")
