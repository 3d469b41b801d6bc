"""Train one model on one split: phases, schedules, best checkpoint, history, resume, DDP.

    python -m hccr.training.train --model M --size Z --images data/processed/images_S.npy \
        --index data/interim/index.csv --split data/processed/splits/SCHEME/Z.csv \
        --config-json JSON --seed N --threads T --out models/runs/M/Z

`--config-json` is the model's params.yaml block (JSON text or a JSON file), with a sweep
cell's overrides applied; it is checked against the schema's `model_block` (hccr.config), so
an error names the key as `model.M.<key>`. Writes into `--out`: `checkpoint.pt` (best
validation accuracy; ties go to the lower validation loss), `history.csv` (rewritten after
every epoch), `last.pt` (resume state, at most every `resume_every_s` and at every phase end)
and `train.json` (summary, at the end). Rerunning with the same `--out` resumes from
`last.pt`; a finished run does nothing (it only restores outputs that were deleted). Under
torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel and only rank 0 writes.

How to read it: `Trainer.run` resumes or starts a `RunState`, then `run_phase` for each
phase (freeze, fresh optimizer at the phase's `lr`), which calls `run_epoch` for each epoch
(train, validate, record, save). Runs that really start from scratch use `scratch_phases`.
Early stopping (on the validation loss, per phase as Keras' callback does per `fit`) is off
unless enabled. The training loss and the validation loss use the same criterion.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hccr import device as devices
from hccr.atomic import write_json
from hccr.config import ModelSettings, Phase, block_for_size, json_object_arg, model_settings
from hccr.data.arrays import load_images
from hccr.errors import ConfigError, reports_errors
from hccr.training.history import write_history
from hccr.training.inputs import RunData, load_run_data
from hccr.training.loader import BatchLoader, compute_stats, epoch_seed
from hccr.training.run_state import RunState, cpu_weights, to_cpu
from hccr.training.schedules import learning_rate
from hccr.training.state import data_digest, ids_digest, load_state, save_state
from hccr.training.step import build_optimizer, train_step

CHECKPOINT, LAST, HISTORY, SUMMARY = "checkpoint.pt", "last.pt", "history.csv", "train.json"


@dataclass(frozen=True)
class RunSpec:
    """What one run trains on and where it writes (the command line, typed)."""

    model: str  # registry name
    size: str  # subset size label
    images: Path
    index: Path
    split: Path
    out: Path
    seed: int = 42
    threads: int | None = None
    pretrained: str | None = None  # overrides the settings' `pretrained`
    device: str = "auto"
    resize_filter: str = "bilinear"  # the filter that made `images`, kept for predict/export
    start_weights: Path | None = None  # the glyph pretraining checkpoint a glyph start fine-tunes
    corpus: dict | None = None  # a glyph pretraining's corpus summary, kept in its checkpoint and train.json
    views: Path | None = None  # predict-path views row-aligned with `images` (augment.views > 0)


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, spec: RunSpec, settings: ModelSettings, runtime: devices.Runtime) -> None:
        from hccr import models  # heavy (timm): imported when a run really starts

        self.models = models
        self.spec = spec
        self.settings = settings
        self.rt = runtime
        self.out = spec.out
        self.pretrained = spec.pretrained or settings.pretrained
        self.data: RunData = load_run_data(spec.images, spec.index, spec.split)
        size = self.data.image_size
        if settings.input_size != size:
            raise ConfigError(
                f"model.{settings.name}.input_size is {settings.input_size} but {spec.images} holds {size} px images"
            )
        self.fingerprint = {
            "model": spec.model,
            "size": spec.size,
            "seed": spec.seed,
            "pretrained": self.pretrained,
            # How often last.pt is written does not change what is trained.
            "config": {k: v for k, v in settings.block.items() if k != "resume_every_s"},
            "input_size": size,
            "images": list(self.data.images.shape),
            "ids": ids_digest(self.data.train_ids, self.data.train_labels, self.data.val_ids, self.data.val_labels),
            # Other pixels or another resize filter is another run (issue 12): never restore it.
            "data": data_digest(self.data.images, self.data.train_ids, self.data.val_ids),
            "resize_filter": spec.resize_filter,
            "world_size": runtime.world_size,
        }
        if spec.start_weights is not None:  # another glyph pretraining is another run
            self.fingerprint["start_weights"] = str(spec.start_weights)
        self.views = self.load_views()
        if self.views is not None:  # other views are another run
            self.fingerprint["views"] = data_digest(self.views, self.data.train_ids, self.data.val_ids)
        self._last_save = time.monotonic()

    def load_views(self) -> np.ndarray | None:
        """The predict-path views the settings ask for (augment.views > 0), checked against the images."""
        share = self.settings.augment.views
        if share <= 0:
            return None
        if self.spec.views is None:
            raise ConfigError(
                f"model.{self.settings.name}.augment.views is {share:g}: pass --views "
                "(data/processed/views_S.npy, made by hccr.data.views)"
            )
        return load_images(self.spec.views, rows=len(self.data.images), size=self.data.image_size)

    # ---------------------------------------------------------------- the run
    def run(self) -> int:
        state = self.resume_state()
        if state is not None and state.finished:
            self.finished_already(state)
            return 0
        self.check_world_size()
        self.build()
        state = self.fresh_or_resumed(state)
        self.out.mkdir(parents=True, exist_ok=True)
        self._last_save = time.monotonic()
        for index, phase in enumerate(self.phases):
            if not state.phase_over(index):
                self.run_phase(state, index, phase)
        self.finish(state)
        return 0

    def resume_state(self) -> RunState | None:
        saved = load_state(self.out / LAST, self.fingerprint)
        return None if saved is None else RunState.from_dict(saved)

    def finished_already(self, state: RunState) -> None:
        """A rerun of a finished run: nothing to train; outputs a workflow engine deleted come back."""
        if not self.rt.is_main:
            return
        if self._outputs_present():
            print(f"{self.out}: run already finished; nothing to do", file=sys.stderr)
            return
        print(f"{self.out}: run finished; restoring missing outputs from {LAST}", file=sys.stderr)
        self.start = state.start
        self.start_source = state.summary.get("start_source", "")
        self.mean = state.summary["normalize"]["mean"]
        self.std = state.summary["normalize"]["std"]
        self.restore_outputs(state)

    def check_world_size(self) -> None:
        gpus = self.settings.gpus
        if gpus > 1 and self.rt.world_size != gpus:
            # A 4-GPU cell run by one process would be another experiment (a quarter of the
            # global batch), so refuse rather than warn.
            raise ConfigError(
                f"model.{self.settings.name}.gpus is {gpus} but this run has {self.rt.world_size} "
                f"process(es); start it with `hccr launch --gpus {gpus} -- ...`"
            )

    def fresh_or_resumed(self, state: RunState | None) -> RunState:
        if state is not None and state.start != self.start:
            print(
                f"warning: {self.out / LAST} began from {state.start} weights but this run starts from "
                f"{self.start}; starting afresh",
                file=sys.stderr,
            )
            state = None
        if state is None:
            return RunState(fingerprint=self.fingerprint, start=self.start)
        self.model.load_state_dict(state.model)
        if self.rt.is_main:
            print(f"{self.out}: resuming after epoch {state.epoch}", file=sys.stderr)
        return state

    # ---------------------------------------------------------------- setup
    def build(self) -> None:
        rt, s = self.rt, self.settings
        seed_everything(self.spec.seed)
        self.model, self.start = self.models.create(
            self.spec.model,
            dict(s.block),
            self.pretrained,
            num_classes=len(self.data.classes),
            start_weights=self.spec.start_weights,
        )
        self.start_source = getattr(self.model, "start_source", "")  # e.g. the weights package and version
        self.model.to(rt.device)
        if rt.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.phases: tuple[Phase, ...] = s.phases_for(self.start)
        self.mean, self.std = compute_stats(self.data.images, self.data.train_ids)
        common = dict(
            seed=self.spec.seed, device=rt.device, mean=self.mean, std=self.std, rank=rt.rank, world_size=rt.world_size
        )
        self.train_loader = BatchLoader(
            self.data.images,
            self.data.train_ids,
            self.data.train_labels,
            s.batch_size,
            shuffle=True,
            augment_cfg=s.augment,
            views=self.views,
            drop_lone=True,  # the GRU head's BatchNorm1d (and head.batchnorm's) cannot train on one image
            **common,
        )
        # Evaluation: each rank its own disjoint share, no padding, sums all-reduced.
        self.val_loader = BatchLoader(
            self.data.images,
            self.data.val_ids,
            self.data.val_labels,
            max(2 * s.batch_size, 64),
            shuffle=False,
            even_shards=False,
            **common,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)

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

    # ---------------------------------------------------------------- a phase
    def start_phase(self, state: RunState, index: int, phase: Phase) -> torch.optim.Optimizer:
        """Freeze what the phase says; its optimizer, fresh or (resuming) as it was saved."""
        resuming = state.resumes_phase(index)
        if not resuming:
            state.begin_phase(index)
        self.models.apply_freeze(self.model, phase.freeze)
        _, trainable = self.models.count_parameters(self.model)
        state.trainable[str(index)] = int(trainable)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(
                f"model.{self.settings.name}: phase {phase.name!r} (freeze: {phase.freeze}) leaves nothing to train"
            )
        optimizer = build_optimizer(params, self.settings.optimizer, phase.lr, fused=self.rt.is_cuda)
        if resuming:
            optimizer.load_state_dict(state.optimizer)
        return optimizer

    def run_phase(self, state: RunState, index: int, phase: Phase) -> None:
        optimizer = self.start_phase(state, index, phase)
        net, evaluate = self._wrap()
        for phase_epoch in range(state.phase_epoch, phase.epochs):
            if self.run_epoch(state, index, phase, phase_epoch, net, evaluate, optimizer):
                break
        state.optimizer = None

    # ---------------------------------------------------------------- an epoch
    def run_epoch(
        self,
        state: RunState,
        index: int,
        phase: Phase,
        phase_epoch: int,
        net: nn.Module,
        evaluate: nn.Module,
        optimizer: torch.optim.Optimizer,
    ) -> bool:
        """Train and validate one epoch, record it, save what is due; True: stop the phase early."""
        epoch = state.epoch + 1
        # Everything random in an epoch follows from (seed, epoch): resumes replay exactly.
        seed_everything(epoch_seed(self.spec.seed, epoch, self.rt.rank, 2))
        began = time.perf_counter()
        train, lr = self.train_epoch(state, net, optimizer, phase, epoch)
        train_seconds = time.perf_counter() - began
        val = self.validate(evaluate, epoch)
        seconds = time.perf_counter() - began

        row = {
            "epoch": epoch,
            "phase": phase.name,
            "train_loss": train.loss,
            "train_accuracy": train.accuracy,
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": lr,
            "seconds": seconds,
            "images_per_second": train.images / train_seconds,
            "phase_index": index,
        }
        state.history.append(row)
        state.epoch, state.phase_epoch = epoch, phase_epoch + 1
        state.seconds_total += seconds
        state.train_seconds += train_seconds
        state.train_images += train.images

        improved = state.best.beaten_by(val.accuracy, val.loss)
        if improved:
            state.best.epoch, state.best.val_accuracy, state.best.val_loss = epoch, val.accuracy, val.loss
        bad_epochs = state.early_stopping.update(val.loss)
        stop = self.settings.early_stopping.enabled and bad_epochs >= self.settings.early_stopping.patience
        if stop and phase_epoch + 1 < phase.epochs:
            state.stopped_early.append(index)
        state.phase_done = stop or phase_epoch + 1 == phase.epochs

        if self.rt.is_main:
            tqdm.write(
                f"epoch {epoch} [{phase.name}] loss {train.loss:.4f} acc {train.accuracy:.4f} "
                f"val_loss {val.loss:.4f} val_acc {val.accuracy:.4f} lr {lr:.3g} "
                f"{row['images_per_second']:.1f} img/s",
                file=sys.stderr,
            )
            self.save_progress(state, optimizer, improved)
            if stop:
                tqdm.write(f"early stopping: val_loss did not improve for {bad_epochs} epochs", file=sys.stderr)
        return stop

    def _batches(self, loader: BatchLoader, desc: str):
        return tqdm(
            loader,
            desc=desc,
            total=len(loader),
            file=sys.stderr,
            leave=False,
            disable=not self.rt.is_main,
            dynamic_ncols=True,
            mininterval=1.0,
        )

    def train_epoch(
        self, state: RunState, net: nn.Module, optimizer: torch.optim.Optimizer, phase: Phase, epoch: int
    ) -> tuple[EpochResult, float]:
        """One pass over the training set; advances `state.step`. Returns (metrics, last lr)."""
        rt = self.rt
        net.train()
        self.train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=rt.device)
        correct = torch.zeros((), device=rt.device, dtype=torch.long)
        count = 0
        # On CUDA the postfix costs a host sync: refresh it rarely; on CPU it is free.
        postfix_every = 50 if rt.is_cuda else 1
        total_steps = phase.epochs * len(self.train_loader)
        lr = phase.lr
        bar = self._batches(self.train_loader, f"epoch {epoch} [{phase.name}] train")
        for i, (x, y) in enumerate(bar):
            lr = learning_rate(
                self.settings.schedule, phase.lr, state.step, epochs=phase.epochs, total_steps=total_steps
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, logits = train_step(
                net, optimizer, self.criterion, x, y, autocast=rt.autocast(), channels_last=rt.channels_last
            )
            state.step += 1
            batch = y.shape[0]
            loss_sum += loss * batch
            correct += (logits.argmax(1) == y).sum()
            count += batch
            if rt.is_main and (i + 1) % postfix_every == 0:
                bar.set_postfix(
                    loss=f"{loss_sum.item() / count:.4f}", acc=f"{correct.item() / count:.4f}", refresh=False
                )
        loss_total, correct_total, seen = self._sum_over_ranks(loss_sum, correct, count)  # one sync per epoch
        return EpochResult(loss_total / seen, correct_total / seen, seen), lr

    @torch.no_grad()
    def validate(self, net: nn.Module, epoch: int) -> EpochResult:
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
        loss_total, correct_total, seen = self._sum_over_ranks(loss_sum, correct, count)
        return EpochResult(loss_total / seen, correct_total / seen)

    def _sum_over_ranks(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> list[float]:
        device = self.rt.device
        totals = torch.stack(
            [loss_sum.double(), correct.double(), torch.tensor(float(count), device=device, dtype=torch.float64)]
        )
        return self.rt.all_reduce_sum(totals).tolist()

    # ---------------------------------------------------------------- outputs
    def save_progress(self, state: RunState, optimizer: torch.optim.Optimizer, improved: bool) -> None:
        """After an epoch (rank 0): the best checkpoint, history.csv, and last.pt when due."""
        # last.pt: a kill before it is written replays the epochs since the previous write;
        # resume_every_s trades that for fewer 0.3-0.6 GB writes.
        save_last = state.phase_done or time.monotonic() - self._last_save >= self.settings.resume_every_s
        weights = cpu_weights(self.model) if improved or save_last else None
        if improved:
            state.best_state = weights
            self.save_checkpoint(weights, state.best.epoch, state.best.val_accuracy)
        write_history(self.out / HISTORY, state.history_rows())
        if save_last:
            state.model = weights
            state.optimizer = to_cpu(optimizer.state_dict())
            save_state(self.out / LAST, state.to_dict())
            self._last_save = time.monotonic()

    def finish(self, state: RunState) -> None:
        if self.rt.is_main:
            summary = self.summary(state)
            write_json(self.out / SUMMARY, summary)
            write_history(self.out / HISTORY, state.history_rows())
            state.finished, state.summary = True, summary
            state.model, state.optimizer = cpu_weights(self.model), None
            save_state(self.out / LAST, state.to_dict())
        self.rt.barrier()

    def save_checkpoint(self, state_dict: dict[str, torch.Tensor], epoch: int, val_accuracy: float) -> None:
        from hccr.models import checkpoint

        checkpoint.save(
            self.out / CHECKPOINT,
            model_name=self.spec.model,
            config=dict(self.settings.block),
            state_dict=state_dict,
            input_size=self.data.image_size,
            normalize={"mean": self.mean, "std": self.std},
            classes=self.data.classes,
            start=self.start,
            start_source=self.start_source,
            epoch=epoch,
            val_accuracy=val_accuracy,
            size=self.spec.size,
            seed=self.spec.seed,
            resize_filter=self.spec.resize_filter,
            **({"corpus": self.spec.corpus} if self.spec.corpus else {}),
        )

    def summary(self, state: RunState) -> dict[str, Any]:
        history = state.history
        last = history[-1] if history else {}
        total, _ = self.models.count_parameters(self.model)
        phases = []
        for i, phase in enumerate(self.phases):
            run = sum(1 for row in history if row["phase_index"] == i)
            phases.append(
                {
                    "name": phase.name,
                    "epochs_planned": phase.epochs,
                    "epochs_run": run,
                    "lr": phase.lr,
                    "freeze": phase.freeze,
                    "trainable_parameters": state.trainable.get(str(i)),
                    "stopped_early": i in state.stopped_early,
                }
            )
        s, rt = self.settings, self.rt
        return {
            "model": self.spec.model,
            "size": self.spec.size,
            "input_size": self.data.image_size,
            "start": self.start,
            "start_source": self.start_source,
            "pretrained": self.pretrained,
            "seed": self.spec.seed,
            "epochs": len(history),
            "epochs_planned": sum(p.epochs for p in self.phases),
            "phases": phases,
            "best_epoch": state.best.epoch,
            "best_val_accuracy": state.best.val_accuracy,
            "best_val_loss": state.best.val_loss,
            "final_train_loss": last.get("train_loss"),
            "final_train_accuracy": last.get("train_accuracy"),
            "final_val_loss": last.get("val_loss"),
            "final_val_accuracy": last.get("val_accuracy"),
            "stopped_early": bool(state.stopped_early),
            "seconds_total": state.seconds_total,
            "images_per_second": state.train_images / state.train_seconds if state.train_seconds else None,
            "parameters": {
                "total": total,
                "trainable_per_phase": [{"phase": p["name"], "trainable": p["trainable_parameters"]} for p in phases],
            },
            "n_train": int(self.data.train_ids.size),
            "n_val": int(self.data.val_ids.size),
            # predict-path views swapped in (share per epoch, file), or none
            "views": {"share": s.augment.views, "file": str(self.spec.views)} if self.views is not None else None,
            "normalize": {"mean": self.mean, "std": self.std},
            "batch_size": s.batch_size,
            "global_batch_size": s.batch_size * rt.world_size,
            "gpus": s.gpus,
            "world_size": rt.world_size,
            "backend": rt.backend,
            "ranks_per_device": rt.ranks_per_device,
            "device": rt.describe(),
            "precision": rt.precision,
            "threads": self.spec.threads,
            "compiled": bool(s.compile and rt.is_cuda),
            "config": dict(s.block),
            **({"corpus": self.spec.corpus} if self.spec.corpus else {}),
        }

    def _outputs_present(self) -> bool:
        return all((self.out / name).exists() for name in (CHECKPOINT, HISTORY, SUMMARY))

    def restore_outputs(self, state: RunState) -> None:
        """A finished run whose outputs were removed: write them again from last.pt."""
        if not (self.out / CHECKPOINT).exists():
            self.save_checkpoint(state.best_state, state.best.epoch, state.best.val_accuracy)
        if not (self.out / HISTORY).exists():
            write_history(self.out / HISTORY, state.history_rows())
        if not (self.out / SUMMARY).exists():
            write_json(self.out / SUMMARY, state.summary)


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
    parser.add_argument(
        "--pretrained", default=None, help="override the config's pretrained: imagenet | none | auto | PATH"
    )
    parser.add_argument("--device", default="auto", choices=devices.DEVICE_CHOICES)
    parser.add_argument(
        "--resize-filter",
        default="bilinear",
        help="the filter that made --images (params resize.filter); kept in the checkpoint for predict/export",
    )
    parser.add_argument(
        "--start-weights", default=None, help="the glyph pretraining checkpoint (pretrained: glyphs | imagenet+glyphs)"
    )
    parser.add_argument(
        "--corpus-json", default=None, help="glyph pretraining: the corpus summary to keep in the checkpoint"
    )
    parser.add_argument(
        "--views", default=None, help="predict-path views, row-aligned with --images (needed when augment.views > 0)"
    )
    return parser


def run_spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        model=args.model,
        size=args.size,
        images=Path(args.images),
        index=Path(args.index),
        split=Path(args.split),
        out=Path(args.out),
        seed=args.seed,
        threads=args.threads,
        pretrained=args.pretrained,
        device=args.device,
        resize_filter=args.resize_filter,
        start_weights=Path(args.start_weights) if args.start_weights else None,
        corpus=json_object_arg(args.corpus_json, "--corpus-json") if args.corpus_json else None,
        views=Path(args.views) if args.views else None,
    )


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = run_spec(args)
    # Per-size epochs ({small: 6, large: 3}) become this run's number before the block is checked.
    block = block_for_size(json_object_arg(args.config_json, "--config-json"), args.size, "--config-json")
    settings = model_settings(spec.model, block)
    runtime = devices.setup(spec.threads, spec.device, cpu_precision=settings.cpu_precision)
    try:
        return Trainer(spec, settings, runtime).run()
    finally:
        devices.teardown(runtime)


if __name__ == "__main__":
    sys.exit(main())
