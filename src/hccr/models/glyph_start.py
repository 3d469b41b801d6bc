"""The printed-glyph starts: a backbone pretrained on the glyph corpus, loaded strictly, new head.

`pretrained: glyphs | imagenet+glyphs | glyphs-excl` (hccr.starts.GLYPH_STARTS) needs the
glyph pretraining's checkpoint (the `glyph_pretrain` rule's `checkpoint.pt`, an ordinary hccr
checkpoint that also carries the corpus summary). The model is built without weights, then
every backbone tensor of the checkpoint is loaded with `strict=True`: the head (3,755-way on
glyphs, 15-way here, and sized by the input) is the one part left fresh. The checkpoint must
be what the start promises: pretrained from scratch for `glyphs`, from ImageNet for
`imagenet+glyphs`, without the target's characters for `glyphs-excl`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from hccr.errors import ConfigError
from hccr.models.pretrained import is_hccr_checkpoint, read_weights
from hccr.starts import GLYPH_STARTS, glyph_source

INIT_START = {"none": "scratch", "imagenet": "imagenet"}


def backbone_state(path: Path, data: dict) -> dict:
    return {key[len("backbone.") :]: value for key, value in data["state_dict"].items() if key.startswith("backbone.")}


def check_pretraining(kind: str, path: Path, data: dict) -> dict:
    """The corpus summary of a glyph pretraining checkpoint that fits start `kind`; ConfigError otherwise."""
    corpus = data.get("corpus") if is_hccr_checkpoint(data) else None
    if not isinstance(corpus, dict):
        raise ConfigError(f"pretrained: {kind} — {path} is not a glyph pretraining checkpoint (no corpus record)")
    spec = GLYPH_STARTS[kind]
    wanted = INIT_START[spec.init]
    if data.get("start") != wanted:
        raise ConfigError(
            f"pretrained: {kind} — {path} was pretrained from {data.get('start')!r} weights, "
            f"but this start needs a glyph pretraining from {wanted!r}"
        )
    if corpus.get("split") != spec.corpus_split:
        raise ConfigError(
            f"pretrained: {kind} — {path} was pretrained on the corpus split {corpus.get('split')!r}, "
            f"but this start needs {spec.corpus_split!r} ("
            + ("without" if spec.corpus_split == "excl" else "with")
            + " the target's characters)"
        )
    return corpus


def build(
    builder: Callable[[dict, str, int], tuple[nn.Module, str]],
    name: str,
    cfg: dict,
    kind: str,
    weights: str | Path | None,
    num_classes: int,
) -> tuple[nn.Module, str]:
    """(model with the glyph-pretrained backbone and a fresh head, start `kind`)."""
    if weights is None:
        raise ConfigError(
            f"model.{name}.pretrained: {kind} needs the glyph pretraining's checkpoint "
            "(train --start-weights PATH; the workflow passes the glyph_pretrain rule's output)"
        )
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"pretrained: {kind} — glyph pretraining checkpoint {path} does not exist")
    data = read_weights(path)
    corpus = check_pretraining(kind, path, data)
    model, _ = builder(cfg, "none", num_classes)
    try:
        model.backbone.load_state_dict(backbone_state(path, data), strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"pretrained: {kind} — the backbone in {path} does not fit model.{name}: {exc}") from exc
    model.start_source = glyph_source(
        str(data.get("model", name)),
        len(str(data.get("characters", ""))),
        len(corpus.get("fonts", [])),
        len(corpus.get("excluded_characters", "")),
        corpus.get("target_characters_in_corpus"),
    )
    return model, kind
