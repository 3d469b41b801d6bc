"""Train one model on one split: phases, schedules, best checkpoint, history, resume, DDP.

    python -m hccr.training.train --model M --size Z --images data/processed/images_S.npy \
        --index data/interim/index.csv --split data/processed/splits/SCHEME/Z.csv \
        --config-json JSON --seed N --threads T --out models/M/Z

`--config-json` is the model's params.yaml block, as a JSON string or a path to a JSON file.
Writes into `--out`: `checkpoint.pt` (best validation accuracy; ties go to the lower
validation loss), `last.pt` (resume state, every epoch), `history.csv` (every epoch) and
`train.json` (summary, at the end). Rerunning with the same `--out` resumes from `last.pt`;
a finished run does nothing (it only restores outputs that were deleted). Under torchrun
(WORLD_SIZE > 1) it trains with DistributedDataParallel and only rank 0 writes.

Each phase freezes what its `freeze` says, gets a fresh optimizer at its `lr` and runs its
`epochs`; runs that really start from scratch use `scratch_phases`. Early stopping (on the
validation loss, per phase as Keras' callback does per `fit`) is off unless enabled.
The training loss and the validation loss use the same criterion (with label smoothing).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hccr import device as devices
from hccr.atomic import write_json
from hccr.config import json_object_arg
from hccr.errors import ConfigError, reports_errors
from hccr.training.loader import BatchLoader, compute_stats, epoch_seed
from hccr.training.history import write_history
from hccr.training.inputs import RunData, load_run_data
from hccr.training.schedules import learning_rate
from hccr.training.settings import Phase, Settings, build_optimizer, parse_settings
from hccr.training.state import ids_digest, load_state, save_state

CHECKPOINT, LAST, HISTORY, SUMMARY = "checkpoint.pt", "last.pt", "history.csv", "train.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_config(text: str) -> dict[str, Any]:
    """The model block from a JSON string or a JSON file."""
    return json_object_arg(text, "--config-json")


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


class Trainer:
    def __init__(self, args: argparse.Namespace, runtime: devices.Runtime, cfg: dict[str, Any],
                 settings: Settings) -> None:
        from hccr import models  # heavy (timm): imported when a run really starts

        self.models = models
        self.args = args
        self.rt = runtime
        self.out = Path(args.out)
        self.cfg = cfg
        self.settings = settings
        self.pretrained = args.pretrained or self.settings.pretrained
        self.data: RunData = load_run_data(args.images, args.index, args.split)
        size = self.data.image_size
        wanted = self.cfg.get("input_size")
        if wanted is not None and int(wanted) != size:
            raise ConfigError(f"config.input_size is {wanted} but {args.images} holds {size} px images")
        self.fingerprint = {
            "model": args.model,
            "size": args.size,
            "seed": args.seed,
            "pretrained": self.pretrained,
            # How often last.pt is written does not change what is trained.
            "config": {k: v for k, v in self.cfg.items() if k != "resume_every_s"},
            "input_size": size,
            "images": list(self.data.images.shape),
            "ids": ids_digest(self.data.train_ids, self.data.train_labels, self.data.val_ids, self.data.val_labels),
            "world_size": runtime.world_size,
        }

    # ---------------------------------------------------------------- setup
    def build(self) -> None:
        rt, s = self.rt, self.settings
        seed_everything(self.args.seed)
        self.model, self.start = self.models.create(self.args.model, self.cfg, self.pretrained)
        self.start_source = getattr(self.model, "start_source", "")  # e.g. the weights package and version
        self.model.to(rt.device)
        if rt.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.phases: tuple[Phase, ...] = s.phases_for(self.start)
        self.mean, self.std = compute_stats(self.data.images, self.data.train_ids)
        common = dict(seed=self.args.seed, device=rt.device, mean=self.mean, std=self.std,
                      rank=rt.rank, world_size=rt.world_size)
        self.train_loader = BatchLoader(self.data.images, self.data.train_ids, self.data.train_labels,
                                        s.batch_size, shuffle=True, augment_cfg=s.augment, **common)
        # Evaluation: each rank its own disjoint share, no padding, sums all-reduced.
        self.val_loader = BatchLoader(self.data.images, self.data.val_ids, self.data.val_labels,
                                      max(2 * s.batch_size, 64), shuffle=False, even_shards=False, **common)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)

    # ---------------------------------------------------------------- epochs
    def _wrap(self) -> tuple[nn.Module, nn.Module]:
        """(network to train, network to evaluate) for the current phase's trainable set."""
        net: nn.Module = self.model
        if self.rt.distributed:
            # DDP records which parameters train when it is built: rebuild it every phase.
            ids = [self.rt.local_rank] if self.rt.is_cuda else None
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        evaluate = self.model
        if self.settings.compile and self.rt.is_cuda:
            net = torch.compile(net)
            evaluate = net if not self.rt.distributed else torch.compile(self.model)
        return net, evaluate

    def _batches(self, loader: BatchLoader, desc: str):
        bar = tqdm(loader, desc=desc, total=len(loader), file=sys.stderr, leave=False,
                   disable=not self.rt.is_main, dynamic_ncols=True, mininterval=1.0)
        return bar

    def train_epoch(self, net: nn.Module, optimizer: torch.optim.Optimizer, phase: Phase, epoch: int,
                    step: int, total_steps: int) -> tuple[dict[str, float], int, float]:
        rt = self.rt
        net.train()
        self.train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=rt.device)
        correct = torch.zeros((), device=rt.device, dtype=torch.long)
        count = 0
        # On CUDA the postfix costs a host sync: refresh it rarely; on CPU it is free.
        postfix_every = 50 if rt.is_cuda else 1
        lr = phase.lr
        bar = self._batches(self.train_loader, f"epoch {epoch} [{phase.name}] train")
        for i, (x, y) in enumerate(bar):
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = learning_rate(self.settings.schedule, phase.lr, step, epochs=phase.epochs, total_steps=total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with rt.autocast():
                logits = net(x)
            loss = self.criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            batch = y.shape[0]
            loss_sum += loss.detach() * batch
            correct += (logits.detach().argmax(1) == y).sum()
            count += batch
            if rt.is_main and (i + 1) % postfix_every == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / count:.4f}", acc=f"{correct.item() / count:.4f}",
                                refresh=False)
        totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(count), device=rt.device,
                                                                               dtype=torch.float64)])
        loss_total, correct_total, seen = rt.all_reduce_sum(totals).tolist()  # one sync per epoch
        return {"loss": loss_total / seen, "accuracy": correct_total / seen, "images": seen}, step, lr

    @torch.no_grad()
    def validate(self, net: nn.Module, epoch: int) -> dict[str, float]:
        rt = self.rt
        if rt.distributed:
            # BatchNorm statistics drift apart per rank; evaluate rank 0's (the saved) model.
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        net.eval()
        loss_sum = torch.zeros((), device=rt.device, dtype=torch.float64)
        correct = torch.zeros((), device=rt.device, dtype=torch.float64)
        count = 0
        for x, y in self._batches(self.val_loader, f"epoch {epoch} val"):
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with rt.autocast():
                logits = net(x)
            loss_sum += self.criterion(logits.float(), y).double() * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            count += y.shape[0]
        totals = torch.stack([loss_sum, correct, torch.tensor(float(count), device=rt.device, dtype=torch.float64)])
        loss_total, correct_total, seen = rt.all_reduce_sum(totals).tolist()
        return {"loss": loss_total / seen, "accuracy": correct_total / seen}

    # ---------------------------------------------------------------- outputs
    def save_checkpoint(self, state_dict: dict[str, torch.Tensor], epoch: int, val_accuracy: float) -> None:
        from hccr.models import checkpoint

        checkpoint.save(
            self.out / CHECKPOINT,
            model_name=self.args.model,
            config=self.cfg,
            state_dict=state_dict,
            input_size=self.data.image_size,
            normalize={"mean": self.mean, "std": self.std},
            start=self.start,
            start_source=self.start_source,
            epoch=epoch,
            val_accuracy=val_accuracy,
            size=self.args.size,
            seed=self.args.seed,
            resize_filter=self.args.resize_filter,
        )

    def summary(self, st: dict[str, Any]) -> dict[str, Any]:
        history = st["history"]
        last = history[-1] if history else {}
        total, _ = self.models.count_parameters(self.model)
        phases = []
        for i, phase in enumerate(self.phases):
            run = sum(1 for row in history if row["phase_index"] == i)
            phases.append({
                "name": phase.name, "epochs_planned": phase.epochs, "epochs_run": run, "lr": phase.lr,
                "freeze": phase.freeze, "trainable_parameters": st["trainable"].get(str(i)),
                "stopped_early": i in st["stopped_early"],
            })
        return {
            "model": self.args.model,
            "size": self.args.size,
            "input_size": self.data.image_size,
            "start": self.start,
            "start_source": self.start_source,
            "pretrained": self.pretrained,
            "seed": self.args.seed,
            "epochs": len(history),
            "epochs_planned": sum(p.epochs for p in self.phases),
            "phases": phases,
            "best_epoch": st["best"]["epoch"],
            "best_val_accuracy": st["best"]["val_accuracy"],
            "best_val_loss": st["best"]["val_loss"],
            "final_train_loss": last.get("train_loss"),
            "final_train_accuracy": last.get("train_accuracy"),
            "final_val_loss": last.get("val_loss"),
            "final_val_accuracy": last.get("val_accuracy"),
            "stopped_early": bool(st["stopped_early"]),
            "seconds_total": st["seconds_total"],
            "images_per_second": st["train_images"] / st["train_seconds"] if st["train_seconds"] else None,
            "parameters": {"total": total,
                           "trainable_per_phase": [{"phase": p["name"], "trainable": p["trainable_parameters"]}
                                                   for p in phases]},
            "n_train": int(self.data.train_ids.size),
            "n_val": int(self.data.val_ids.size),
            "normalize": {"mean": self.mean, "std": self.std},
            "batch_size": self.settings.batch_size,
            "global_batch_size": self.settings.batch_size * self.rt.world_size,
            "gpus": self.cfg.get("gpus", 1),
            "world_size": self.rt.world_size,
            "backend": self.rt.backend,
            "ranks_per_device": self.rt.ranks_per_device,
            "device": self.rt.describe(),
            "precision": self.rt.precision,
            "threads": self.args.threads,
            "compiled": bool(self.settings.compile and self.rt.is_cuda),
            "config": self.cfg,
        }

    def _history_rows(self, st: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "phase_index"} for row in st["history"]]

    def _outputs_present(self) -> bool:
        return all((self.out / name).exists() for name in (CHECKPOINT, HISTORY, SUMMARY))

    def restore_outputs(self, st: dict[str, Any]) -> None:
        """A finished run whose outputs were removed: write them again from last.pt."""
        if not (self.out / CHECKPOINT).exists():
            self.save_checkpoint(st["best_state"], st["best"]["epoch"], st["best"]["val_accuracy"])
        if not (self.out / HISTORY).exists():
            write_history(self.out / HISTORY, self._history_rows(st))
        if not (self.out / SUMMARY).exists():
            write_json(self.out / SUMMARY, st["summary"])

    # ---------------------------------------------------------------- the run
    def run(self) -> int:
        rt = self.rt
        st = load_state(self.out / LAST, self.fingerprint)
        if st is not None and st.get("finished"):
            if rt.is_main:
                if self._outputs_present():
                    print(f"{self.out}: run already finished; nothing to do", file=sys.stderr)
                else:
                    print(f"{self.out}: run finished; restoring missing outputs from {LAST}", file=sys.stderr)
                    self.build_for_restore(st)
                    self.restore_outputs(st)
            return 0
        gpus = self.cfg.get("gpus", 1)
        if isinstance(gpus, int) and gpus > 1 and rt.world_size != gpus:
            # A 4-GPU cell run by one process would be another experiment (a quarter of the
            # global batch), so refuse rather than warn.
            raise ConfigError(f"config.gpus is {gpus} but this run has {rt.world_size} process(es); "
                              f"start it with `hccr launch --gpus {gpus} -- ...`")
        self.build()
        if st is not None and st.get("start") != self.start:
            print(f"warning: {self.out / LAST} began from {st.get('start')} weights but this run starts from "
                  f"{self.start}; starting afresh", file=sys.stderr)
            st = None
        if st is None:
            st = {
                "fingerprint": self.fingerprint, "finished": False, "start": self.start,
                "phase_index": 0, "phase_epoch": 0, "phase_done": False, "step": 0, "epoch": 0,
                "model": None, "optimizer": None, "history": [],
                "best": {"epoch": 0, "val_accuracy": -1.0, "val_loss": math.inf}, "best_state": None,
                "early_stopping": {"best_loss": math.inf, "bad_epochs": 0},
                "trainable": {}, "stopped_early": [], "seconds_total": 0.0,
                "train_seconds": 0.0, "train_images": 0.0,
            }
        else:
            self.model.load_state_dict(st["model"])
            if rt.is_main:
                print(f"{self.out}: resuming after epoch {st['epoch']}", file=sys.stderr)
        self.out.mkdir(parents=True, exist_ok=True)

        last_save = time.monotonic()
        for pi, phase in enumerate(self.phases):
            if pi < st["phase_index"] or (pi == st["phase_index"] and st["phase_done"]):
                continue
            continuing = pi == st["phase_index"] and st["optimizer"] is not None
            if not continuing:
                st.update(phase_index=pi, phase_epoch=0, phase_done=False, step=0, optimizer=None,
                          early_stopping={"best_loss": math.inf, "bad_epochs": 0})
            self.models.apply_freeze(self.model, phase.freeze)
            _, trainable = self.models.count_parameters(self.model)
            st["trainable"][str(pi)] = int(trainable)
            params = [p for p in self.model.parameters() if p.requires_grad]
            if not params:
                raise ConfigError(f"config: phase {phase.name!r} (freeze: {phase.freeze}) leaves nothing to train")
            optimizer = build_optimizer(params, self.settings, phase.lr, fused=rt.is_cuda)
            if continuing:
                optimizer.load_state_dict(st["optimizer"])
            net, evaluate = self._wrap()
            total_steps = phase.epochs * len(self.train_loader)

            for phase_epoch in range(st["phase_epoch"], phase.epochs):
                epoch = st["epoch"] + 1
                # Everything random in an epoch follows from (seed, epoch): resumes replay exactly.
                seed_everything(epoch_seed(self.args.seed, epoch, rt.rank, 2))
                began = time.perf_counter()
                train, step, lr = self.train_epoch(net, optimizer, phase, epoch, st["step"], total_steps)
                train_seconds = time.perf_counter() - began
                val = self.validate(evaluate, epoch)
                seconds = time.perf_counter() - began
                row = {
                    "epoch": epoch, "phase": phase.name, "train_loss": train["loss"],
                    "train_accuracy": train["accuracy"], "val_loss": val["loss"],
                    "val_accuracy": val["accuracy"], "lr": lr, "seconds": seconds,
                    "images_per_second": train["images"] / train_seconds, "phase_index": pi,
                }
                st["history"].append(row)
                st.update(epoch=epoch, step=step, phase_epoch=phase_epoch + 1, seconds_total=st["seconds_total"] + seconds,
                          train_seconds=st["train_seconds"] + train_seconds,
                          train_images=st["train_images"] + train["images"])

                improved = (val["accuracy"], -val["loss"]) > (st["best"]["val_accuracy"], -st["best"]["val_loss"])
                if improved:
                    st["best"] = {"epoch": epoch, "val_accuracy": val["accuracy"], "val_loss": val["loss"]}
                es = st["early_stopping"]
                if val["loss"] < es["best_loss"]:
                    es.update(best_loss=val["loss"], bad_epochs=0)
                else:
                    es["bad_epochs"] += 1
                stop = self.settings.early_stopping and es["bad_epochs"] >= self.settings.patience
                if stop and phase_epoch + 1 < phase.epochs:
                    st["stopped_early"].append(pi)
                st["phase_done"] = stop or phase_epoch + 1 == phase.epochs

                if rt.is_main:
                    tqdm.write(
                        f"epoch {epoch} [{phase.name}] loss {train['loss']:.4f} acc {train['accuracy']:.4f} "
                        f"val_loss {val['loss']:.4f} val_acc {val['accuracy']:.4f} lr {lr:.3g} "
                        f"{row['images_per_second']:.1f} img/s",
                        file=sys.stderr,
                    )
                    # last.pt: a kill before it is written replays the epochs since the
                    # previous write; resume_every_s trades that for fewer 0.3-0.6 GB writes.
                    save_last = st["phase_done"] or time.monotonic() - last_save >= self.settings.resume_every_s
                    weights = _cpu_state(self.model) if improved or save_last else None
                    if improved:
                        st["best_state"] = weights
                        self.save_checkpoint(weights, epoch, val["accuracy"])
                    write_history(self.out / HISTORY, self._history_rows(st))
                    if save_last:
                        st["model"] = weights
                        st["optimizer"] = _to_cpu(optimizer.state_dict())
                        save_state(self.out / LAST, st)
                        last_save = time.monotonic()
                if stop:
                    if rt.is_main:
                        tqdm.write(f"early stopping: val_loss did not improve for {es['bad_epochs']} epochs",
                                   file=sys.stderr)
                    break
            st["optimizer"] = None

        if rt.is_main:
            summary = self.summary(st)
            write_json(self.out / SUMMARY, summary)
            write_history(self.out / HISTORY, self._history_rows(st))
            st.update(finished=True, summary=summary, model=_cpu_state(self.model), optimizer=None)
            save_state(self.out / LAST, st)
        rt.barrier()
        return 0

    def build_for_restore(self, st: dict[str, Any]) -> None:
        """Enough of `build` to write outputs again (no loaders, no training)."""
        self.start = st["start"]
        self.start_source = st["summary"].get("start_source", "")
        self.mean = st["summary"]["normalize"]["mean"]
        self.std = st["summary"]["normalize"]["std"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccr train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registry name: efficientnet | inception_gru | cnn")
    parser.add_argument("--size", required=True, help="subset size label (small | medium | large | full)")
    parser.add_argument("--images", required=True, help="uint8 array (N, S, S): data/processed/images_S.npy")
    parser.add_argument("--index", required=True, help="data/interim/index.csv")
    parser.add_argument("--split", required=True, help="split file with id,role")
    parser.add_argument("--config-json", required=True, help="the model's params block: JSON text or a JSON file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for this job (split among DDP ranks)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--pretrained", default=None, help="override the config's pretrained: imagenet | none | auto | PATH")
    parser.add_argument("--device", default="auto", choices=devices.DEVICE_CHOICES)
    parser.add_argument(
        "--resize-filter", default="bilinear",
        help="the filter that made --images (params resize.filter); kept in the checkpoint for predict/export",
    )
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime = None
    try:
        cfg = parse_config(args.config_json)
        settings = parse_settings(cfg)
        runtime = devices.setup(args.threads, args.device, cpu_precision=settings.cpu_precision)
        return Trainer(args, runtime, cfg, settings).run()
    finally:
        if runtime is not None:
            devices.teardown(runtime)


if __name__ == "__main__":
    sys.exit(main())
