"""Give a job its own GPUs: take K free device slots, set CUDA_VISIBLE_DEVICES, run the job.

    python -m hccr.training.launch --gpus K [--slots-per-gpu N] [--lock-dir DIR] -- CMD...

Snakemake counts `--resources gpu=N` but never says which GPU a job gets. Each device has N
slots, each a lock file (`gpu{id}.slot{j}.lock`) held with `fcntl.flock`: the launcher tries
them without blocking, takes one slot per rank on K *distinct* devices, and polls until it
has them (holding nothing while it waits, so two waiting jobs cannot starve each other).
On a machine with fewer than K devices the ranks share them round-robin, one slot each,
when `--slots-per-gpu` allows it (hccr.device then uses gloo: NCCL forbids two ranks on a
GPU); a sweep's 4-GPU cell thus runs on one GPU as four ranks with the same global batch.
The kernel drops a flock when its holder dies, so no stale lock survives a killed job; the
job inherits the lock descriptors, so its devices stay taken until the job itself has exited.

The lock folder belongs to the machine, not to a checkout: two checkouts (or two users) on
one host must see each other's slots, or both take GPU 0. It is `--lock-dir`, else the env
variable HCCR_GPU_LOCK_DIR, else `/tmp/hccr-gpu-locks` (made world-writable and sticky, like
/tmp, so every user's jobs can lock the same files). On a cluster, where each node has its
own /tmp, that is one folder per node, as the devices are.

With K > 1 the command `python -m MODULE ARGS` (or `hccr COMMAND ARGS`) runs as
`python -m torch.distributed.run --standalone --nproc_per_node K -m MODULE ARGS`
(NCCL on GPUs; on a machine without GPUs, K gloo processes on the CPU).

Devices: `torch.cuda.device_count()`, or the env variable HCCR_NUM_GPUS when set (tests
simulate GPUs with it). With no device the command runs as is, CUDA_VISIBLE_DEVICES untouched;
`--gpus 0` runs it with no GPU visible (CUDA_VISIBLE_DEVICES="").
The exit status is the command's; a command killed by signal S gives 128 + S. SIGINT,
SIGTERM and SIGHUP sent to the launcher are passed on to the command.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hccr.errors import ConfigError, reports_errors

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOCK_DIR_ENV = "HCCR_GPU_LOCK_DIR"
MACHINE_LOCK_DIR = Path("/tmp/hccr-gpu-locks")


def default_lock_dir() -> Path:
    """The machine's lock folder: HCCR_GPU_LOCK_DIR, else /tmp/hccr-gpu-locks."""
    override = os.environ.get(LOCK_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else MACHINE_LOCK_DIR


def ensure_lock_dir(path: Path) -> None:
    """Create the folder; the shared default is made writable by all, with the sticky bit."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    if path == MACHINE_LOCK_DIR:
        try:
            os.chmod(path, 0o1777)
        except PermissionError:  # made by another user meanwhile: theirs to set
            pass


def device_ids() -> list[str]:
    """The ids CUDA_VISIBLE_DEVICES may name, in order ('0', '1', ... or the parent's own list)."""
    override = os.environ.get("HCCR_NUM_GPUS")
    if override is not None and override.strip() != "":
        try:
            count = int(override)
        except ValueError:
            raise ConfigError(f"HCCR_NUM_GPUS: expected a number of GPUs, got {override!r}") from None
        if count < 0:
            raise ConfigError(f"HCCR_NUM_GPUS: must be >= 0, got {count}")
    else:
        import torch

        count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible and count:
        # Already narrowed (e.g. by SLURM): lock and hand out the ids the parent was given.
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def ranks_per_device(k: int, devices: int) -> list[int]:
    """How many of a K-rank job's ranks each of D devices carries: one each on K of them when
    K <= D, else K spread round-robin (device d gets ranks d, d + D, ...)."""
    if k <= devices:
        return [1] * k
    base, extra = divmod(k, devices)
    return [base + (d < extra) for d in range(devices)]


class SlotLocks:
    """Non-blocking flock on per-device slot files; `acquire` polls until a job's slots are held.

    A K-rank job holds one slot per rank: on K distinct devices when the machine has K, else
    on every device, several per device (`ranks_per_device`), which `slots_per_gpu` must allow.
    """

    def __init__(self, lock_dir: str | os.PathLike, devices: list[str], slots_per_gpu: int) -> None:
        self.lock_dir = Path(lock_dir)
        self.devices = devices
        self.slots = slots_per_gpu
        self.held: list[tuple[str, int]] = []  # (device id, fd of one of its slot locks)

    def _path(self, device: str, slot: int) -> Path:
        return self.lock_dir / f"gpu{device}.slot{slot}.lock"

    def _open(self, path: Path) -> int:
        """A descriptor to flock; another user's lock file may only be readable (flock needs no more)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            return os.open(path, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o666)  # the umask narrowed it: let other users' jobs open it too
        except PermissionError:
            pass
        return fd

    def _try_slot(self, device: str, slot: int) -> bool:
        fd = self._open(self._path(device, slot))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:  # who holds it, for people looking: informational only
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        self.held.append((device, fd))
        return True

    def try_acquire(self, k: int) -> bool:
        """One pass, all or nothing. One rank per device: lower slots first, which spreads jobs
        over the devices before any two share one. Several per device: every device must give
        its share of the ranks."""
        ensure_lock_dir(self.lock_dir)
        if k <= len(self.devices):
            for slot in range(self.slots):
                for device in self.devices:
                    if len(self.held) == k:
                        return True
                    if device not in self.chosen:
                        self._try_slot(device, slot)
        else:
            for device, share in zip(self.devices, ranks_per_device(k, len(self.devices)), strict=False):
                taken = 0
                for slot in range(self.slots):
                    if taken == share:
                        break
                    taken += self._try_slot(device, slot)
        if len(self.held) == k:
            return True
        self.release()  # hold nothing while waiting
        return False

    def acquire(self, k: int, poll: float) -> list[str]:
        waited = False
        while not self.try_acquire(k):
            if not waited:
                print(f"launch: waiting for {k} free GPU slot(s) in {self.lock_dir}", file=sys.stderr)
                waited = True
            time.sleep(poll)
        return self.chosen

    @property
    def chosen(self) -> list[str]:
        """The distinct devices held, in the machine's order."""
        return sorted({device for device, _ in self.held}, key=self.devices.index)

    def release(self) -> None:
        for _, fd in self.held:
            os.close(fd)  # closing the last descriptor drops the flock
        self.held.clear()

    @property
    def fds(self) -> list[int]:
        return [fd for _, fd in self.held]


def torchrun_command(command: list[str], nproc: int) -> list[str]:
    """Rewrite `python -m MODULE ARGS` / `hccr CMD ARGS` / `python SCRIPT ARGS` for torchrun."""
    from hccr.cli import COMMANDS

    head = Path(command[0]).name
    target: list[str]
    if head == "hccr" and len(command) > 1 and command[1] in COMMANDS:
        target = ["-m", COMMANDS[command[1]], *command[2:]]
    elif head.startswith("python") or command[0] == sys.executable:
        rest = command[1:]
        while rest and rest[0] in ("-u", "-O", "-B"):  # harmless interpreter flags
            rest = rest[1:]
        if len(rest) >= 2 and rest[0] == "-m":
            target = ["-m", rest[1], *rest[2:]]
        elif rest and not rest[0].startswith("-"):
            target = rest  # a script path
        else:
            raise ConfigError(f"launch: cannot run {' '.join(command)!r} under torchrun: expected python -m MODULE ...")
    else:
        raise ConfigError(
            f"launch: with --gpus {nproc} the command must be `python -m MODULE ...` or `hccr COMMAND ...`, "
            f"got {command[0]!r}"
        )
    interpreter = command[0] if head.startswith("python") else sys.executable
    return [interpreter, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *target]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher dies (e.g. SIGKILL), so no job is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the job merely outlives a killed launcher
        pass


def run_command(command: list[str], env: dict[str, str], pass_fds: list[int]) -> int:
    parent = os.getpid()

    def preexec() -> None:
        _die_with_parent()
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    try:
        child = subprocess.Popen(command, env=env, pass_fds=pass_fds, preexec_fn=preexec)
    except FileNotFoundError:
        raise ConfigError(f"launch: command not found: {command[0]!r}") from None

    def forward(signum, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccr launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=1, help="devices the job needs (K > 1 runs it under torchrun)")
    parser.add_argument("--slots-per-gpu", type=int, default=1, help="jobs that may share one device")
    parser.add_argument(
        "--lock-dir",
        default=None,
        help=f"folder of the per-slot lock files, one per machine (default: ${LOCK_DIR_ENV}, else {MACHINE_LOCK_DIR})",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between tries while all slots are busy")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("launch: no command given (usage: hccr launch --gpus K -- CMD ...)")
    if args.gpus < 0:
        raise ConfigError(f"--gpus: must be >= 0, got {args.gpus}")
    if args.slots_per_gpu < 1:
        raise ConfigError(f"--slots-per-gpu: must be >= 1, got {args.slots_per_gpu}")
    devices = device_ids()
    if devices and args.gpus > len(devices):
        most = max(ranks_per_device(args.gpus, len(devices)))
        if most > args.slots_per_gpu:
            raise ConfigError(
                f"--gpus {args.gpus}: this machine has {len(devices)} GPU(s), so {most} ranks must share one, "
                f"but --slots-per-gpu is {args.slots_per_gpu}; set resources.slots_per_gpu >= {most} in params "
                f"to run it with ranks sharing devices"
            )
        print(f"launch: {args.gpus} ranks on {len(devices)} GPU(s), up to {most} per device (gloo)", file=sys.stderr)
    if args.gpus > 1:
        command = torchrun_command(command, args.gpus)
    env = dict(os.environ)
    # Idle OpenMP threads sleep instead of spinning: on a busy machine (or several jobs on
    # one host) spinning threads steal the cores the working ones need. Must be set
    # before torch loads, hence here and not in hccr.device.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    locks = SlotLocks(args.lock_dir or default_lock_dir(), devices, args.slots_per_gpu)
    if devices and args.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job: keep it off every GPU
    elif devices:
        chosen = locks.acquire(args.gpus, args.poll)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        print(f"launch: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr)
    try:
        return run_command(command, env, locks.fds)
    finally:
        locks.release()


if __name__ == "__main__":
    sys.exit(main())
