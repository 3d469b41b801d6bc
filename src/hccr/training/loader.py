"""Training batches straight from the decoded uint8 image array.

No per-image Python, no PIL, no JPEG: the selected rows are copied once into a uint8 tensor
(on the GPU when they fit, else pinned host memory), and each batch is one `index_select`,
a float conversion, optional augmentation and normalisation `((x / 255) - mean) / std`,
shaped `(B, 1, S, S)`. A selection larger than a quarter of the host's free memory (a
million-image CASIA-HWDB array at 96 px is 9 GB) is not copied: each batch is then gathered
from the memory-mapped array itself, the next one on a helper thread while this one is used.

The epoch order comes from a generator seeded with (seed, epoch), so any epoch can be replayed
(`set_epoch`) — that is what makes resumed runs identical to uninterrupted ones. With
`world_size > 1` each rank takes every `world_size`-th element of the epoch's permutation
(padded by wrapping around so every rank gets the same number of batches, as DDP requires).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from hccr.errors import DataError
from hccr.normalization import affine, check_stats
from hccr.training.augment import AugmentConfig, draw_matrices, warp_batch

# Keep the whole uint8 set on the GPU when it needs at most this share of free memory; copy
# it into host memory when it needs at most this share of the host's available memory.
GPU_RESIDENT_SHARE = 0.25
HOST_RESIDENT_SHARE = 0.25


def host_available_bytes() -> int:
    """Memory a new allocation can get without swapping: MemAvailable (free + reclaimable cache)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def epoch_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers such as (seed, epoch, rank, stream)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def compute_stats(
    images: np.ndarray, ids: Sequence[int] | np.ndarray | None = None, chunk: int = 2048
) -> tuple[float, float]:
    """Mean and std of the selected images in pixel/255 units (exact, via a 256-bin histogram)."""
    rows = np.arange(len(images)) if ids is None else np.sort(np.asarray(ids, dtype=np.int64))
    if rows.size == 0:
        raise DataError("compute_stats: no images selected")
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, rows.size, chunk):
        block = np.asarray(images[rows[start : start + chunk]])
        if block.dtype != np.uint8:
            raise DataError(f"compute_stats: expected uint8 images, got {block.dtype}")
        counts += np.bincount(block.ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = float((counts * levels).sum() / total)
    var = float((counts * (levels - mean) ** 2).sum() / total)
    std = math.sqrt(var)
    # A constant image set would divide by zero; any positive std keeps it finite.
    return mean, (std if std > 1e-8 else 1.0)


class BatchLoader:
    """Iterate `(x, y)` batches: x float `(B, 1, S, S)` normalised, y int64 labels, on `device`.

    `images` is the `(N, S, S)` uint8 array (a memmap is fine); `ids` the rows to use and
    `labels` their classes (same length). `even_shards=False` gives each rank exactly its
    share with no wrap-around padding (for evaluation, where duplicates would bias sums).
    `in_memory`: copy the selected rows once (True), gather every batch from `images` (False),
    or decide by size (None: copy when they fit HOST_RESIDENT_SHARE of available memory).
    `views`: an array row-aligned with `images` (hccr.data.views: each glyph as predict frames
    a user's file); each epoch, a share `augment.views` of the images, drawn from the epoch's
    generator, is swapped for its view before the affine.
    `drop_lone`: leave out a last batch of exactly one image (for training: a BatchNorm1d
    cannot normalise one sample, so PyTorch refuses it; with shuffling, a different image sits
    out each epoch).
    """

    def __init__(
        self,
        images: np.ndarray,
        ids: Sequence[int] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
        mean: float,
        std: float,
        augment_cfg: AugmentConfig | Mapping | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        drop_lone: bool = False,
        even_shards: bool = True,
        in_memory: bool | None = None,
        views: np.ndarray | None = None,
    ) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"expected images of shape (N, S, S), got {images.shape}")
        if ids.shape != labels.shape or ids.ndim != 1:
            raise DataError(f"ids ({ids.shape}) and labels ({labels.shape}) must be 1-D and of equal length")
        if ids.size == 0:
            raise DataError("BatchLoader: no images selected")
        if ids.min() < 0 or ids.max() >= len(images):
            raise DataError(f"ids out of range: images has {len(images)} rows, max id {int(ids.max())}")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not (0 <= rank < world_size):
            raise DataError(f"rank {rank} not in [0, world_size={world_size})")
        mean, std = check_stats(mean, std, "BatchLoader")
        augment = AugmentConfig.from_dict(augment_cfg)
        if augment.views > 0 and views is None:
            raise DataError(f"augment.views is {augment.views:g} but no views array was given (hccr.data.views)")
        if views is not None and views.shape != images.shape:
            raise DataError(f"views array {views.shape} must match the images array {images.shape} row for row")

        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.mean = float(mean)
        self.std = float(std)
        self.augment = augment
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last
        self.drop_lone = drop_lone
        self.even_shards = even_shards
        self.image_size = int(images.shape[1])
        self.epoch = 0

        targets = torch.from_numpy(labels.copy())
        self.view_share = augment.views if views is not None else 0.0
        # The views are kept beside the images, wherever the images are kept: both count.
        nbytes = ids.size * self.image_size * self.image_size * (2 if self.view_share > 0 else 1)
        if in_memory is None:
            in_memory = nbytes <= HOST_RESIDENT_SHARE * host_available_bytes()
        self.source, self.rows = None, ids
        self.view_source, self.view_data = None, None
        if not in_memory:  # batches are gathered from the memory map as they are needed
            self.source = images
            self.view_source = views
            self.resident = False
            self.data = None
            self.targets = targets.to(self.device) if self.device.type == "cuda" else targets
            return
        data = self._copy_rows(images, ids)
        self.resident = True  # data lives on self.device
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if nbytes <= GPU_RESIDENT_SHARE * free:
                data = data.to(self.device)
            else:
                data = data.pin_memory()
                self.resident = False
            targets = targets.to(self.device)
        if self.view_share > 0:  # kept where the images are kept
            view_data = self._copy_rows(views, ids)
            self.view_data = view_data.pin_memory() if data.is_pinned() else view_data.to(data.device)
        self.data, self.targets = data, targets

    def _copy_rows(self, array: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        """One copy of the selected rows; sorted reads are the fast path on a memmap."""
        order = np.argsort(ids, kind="stable")
        rows = np.empty((ids.size, self.image_size, self.image_size), dtype=np.uint8)
        rows[order] = np.asarray(array[ids[order]], dtype=np.uint8)
        return torch.from_numpy(rows)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil((n - self._lone(n)) / self.batch_size)

    def _lone(self, n: int) -> int:
        """1 when `drop_lone` leaves out the single image a last batch of `n` samples would hold."""
        return int(self.drop_lone and n > 1 and n % self.batch_size == 1)

    @property
    def dataset_size(self) -> int:
        return len(self.targets)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before dropping a last partial batch)."""
        n, w = self.dataset_size, self.world_size
        if w == 1:
            return n
        if not self.even_shards:
            return len(range(self.rank, n, w))
        return n // w if self.drop_last else math.ceil(n / w)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's positions (into ids) for an epoch, in visiting order."""
        epoch = self.epoch if epoch is None else epoch
        n, w = self.dataset_size, self.world_size
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if w > 1:
            if self.even_shards:
                total = (n // w) * w if self.drop_last else math.ceil(n / w) * w
                if total > n:  # wrap around so every rank gets the same count
                    order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
                order = order[:total]
            order = order[self.rank :: w]
        if self.drop_last:
            order = order[: (len(order) // self.batch_size) * self.batch_size]
        return order[: len(order) - self._lone(len(order))]

    def _gather(self, index: torch.Tensor, views: bool = False) -> torch.Tensor:
        """The uint8 pixels (B, S, S) of positions `index` (into ids), from the copy or the memory map."""
        if self.source is None:
            return (self.view_data if views else self.data).index_select(0, index)
        # One copy, straight out of the map (pages the kernel caches; no second pass to reorder).
        source = self.view_source if views else self.source
        return torch.from_numpy(np.take(source, self.rows[index.cpu().numpy()], axis=0))

    def _swap_views(self, pixels: torch.Tensor, index: torch.Tensor, swap: torch.Tensor) -> torch.Tensor:
        """`pixels` with the rows where `swap` is True replaced by their views."""
        if not bool(swap.any()):
            return pixels
        where = swap.nonzero().squeeze(1)  # pixels is a fresh gather: writing into it is safe
        pixels[where.to(pixels.device)] = self._gather(index[where.to(index.device)], views=True).to(pixels.device)
        return pixels

    def _batches(self, order: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(start, positions, uint8 pixels) per batch. From a memory map, the next batch is read on
        a helper thread while this one is used: the page faults of rows touched for the first time
        overlap the warp and the training step (numpy's take releases the GIL)."""
        starts = range(0, len(order), self.batch_size)
        if self.source is None:
            for start in starts:
                index = order[start : start + self.batch_size]
                yield start, index, self._gather(index)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="hccr-gather") as pool:
            pending = None
            for start in starts:
                index = order[start : start + self.batch_size]
                pixels = pending.result() if pending is not None else self._gather(index)
                following = order[start + self.batch_size : start + 2 * self.batch_size]
                pending = pool.submit(self._gather, following) if len(following) else None
                yield start, index, pixels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.epoch_indices()
        theta = None
        if self.augment.enabled:
            # The whole epoch's affines at once: a few dozen small ops per epoch, not per batch.
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, self.rank, 1))
            theta = draw_matrices(len(order), self.augment, generator, device=self.device)
        swap = None
        if self.view_share > 0:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, self.rank, 2))
            swap = torch.rand(len(order), generator=generator) < self.view_share
        if self.resident:
            order = order.to(self.device)
        # hccr.normalization's pixel * scale + offset, fused into the warp when augmenting.
        scale, offset = affine(self.mean, self.std)
        for start, index, pixels in self._batches(order):
            if swap is not None:
                pixels = self._swap_views(pixels, index, swap[start : start + self.batch_size])
            if self.device.type == "cuda" and not self.resident:
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
            pixels = pixels.unsqueeze(1)
            if theta is not None:
                x = warp_batch(pixels, theta[start : start + self.batch_size], scale=scale, offset=offset)
            else:
                x = pixels.to(torch.float32).mul_(scale).add_(offset)
            y = self.targets.index_select(0, index.to(self.targets.device))
            yield x, y
