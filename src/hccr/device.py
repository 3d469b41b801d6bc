"""Where a training process runs: device, precision, threads and its place in a DDP group.

`setup()` reads the torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE):
with more than one process it joins the process group (NCCL on CUDA, gloo on CPU, and gloo
when ranks share a GPU). On CUDA the process uses `cuda:LOCAL_RANK`, or device LOCAL_RANK
mod D when the job has more ranks than its D visible devices (the launcher has already
narrowed CUDA_VISIBLE_DEVICES to its slots),
bf16 autocast, channels_last and TF32. On CPU: float32 by default, or bf16 autocast when the
config asks for it (`cpu_precision: bfloat16`) and the processor has native bf16 (oneDNN
runs the convolutions about twice as fast then); channels_last on both, since oneDNN's
convolution kernels prefer it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import math
import os
import platform
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hccr.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None  # autocast dtype, None = float32
    backend: str | None = None  # the process group's backend when distributed
    ranks_per_device: int = 1  # > 1 when ranks share a GPU (hccr.training.launch with few devices)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def channels_last(self) -> bool:
        return True

    @property
    def precision(self) -> str:
        return "bfloat16-autocast" if self.amp_dtype == torch.bfloat16 else "float32"

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        return "cpu"

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the process group (in place); a no-op in a single process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def device_slot(local_rank: int, local_world_size: int, device_count: int) -> tuple[int, int]:
    """(this rank's CUDA device index, the most ranks any device carries) on `device_count` GPUs.

    One rank per device when there are enough; otherwise ranks share them round-robin (rank r
    on device r mod D), as hccr.training.launch hands out slots when a job asks for more GPUs than the
    machine has: four ranks then do the same arithmetic as four GPUs, on one.
    """
    if device_count < 1:
        raise ConfigError("no CUDA device is visible")
    if local_world_size <= device_count:
        if local_rank >= device_count:
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {device_count} visible CUDA devices")
        return local_rank, 1
    return local_rank % device_count, math.ceil(local_world_size / device_count)


def distributed_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as torchrun sets them; (0, 0, 1) outside torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local_rank, world_size


def cpu_bf16_supported() -> bool:
    """Whether oneDNN has native bf16 kernels on this processor (AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc keep freed blocks for reuse instead of handing them back to the kernel.

    By default every tensor over ~128 KB is a fresh mmap, and freeing it (or trimming the heap
    top) returns the pages; the next batch then page-faults all of them in again. On a VM
    that fault cost dominated the loader in a fresh process (24k -> 47k images/s on one
    thread, 26k -> 99k on two; docs/performance.md). This is what PyTorch's CPU tuning guide
    gets from swapping in jemalloc or tcmalloc, done with the allocator already loaded.
    Returns False (and changes nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        # 32 MiB: glibc's documented maximum mmap threshold on 64-bit.
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    except (OSError, AttributeError):
        return False


def setup(threads: int | None = None, device: str = "auto", cpu_precision: str = "float32") -> Runtime:
    """Pick the device and precision, set CPU threads, and join the DDP group if launched so."""
    retain_freed_memory()
    if device not in DEVICE_CHOICES:
        raise ConfigError(f"--device: unknown device {device!r}; choose from {', '.join(DEVICE_CHOICES)}")
    rank, local_rank, world_size = distributed_env()
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if threads is not None:
        # The job's cores are shared by its processes.
        torch.set_num_threads(max(1, int(threads) // world_size))

    ranks_per_device = 1
    if use_cuda:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
        index, ranks_per_device = device_slot(local_rank, local_world_size, torch.cuda.device_count())
        torch_device = torch.device("cuda", index)
        torch.cuda.set_device(torch_device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    else:
        torch_device = torch.device("cpu")
        amp = None
        if cpu_precision == "bfloat16":
            if cpu_bf16_supported():
                amp = torch.bfloat16
            else:
                print(
                    "warning: cpu_precision bfloat16 asked for, but this CPU has no native bf16; training in float32",
                    file=sys.stderr,
                )

    backend = None
    if world_size > 1:
        # NCCL refuses two ranks on one GPU; gloo all-reduces CUDA tensors through the host.
        backend = "nccl" if use_cuda and ranks_per_device == 1 else "gloo"
        if not dist.is_initialized():
            kwargs = {"device_id": torch_device} if backend == "nccl" else {}
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return Runtime(
        device=torch_device,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        amp_dtype=amp,
        backend=backend,
        ranks_per_device=ranks_per_device,
    )


def teardown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
