"""params.yaml: the one place it is checked, its typed form, and the questions the DAG asks of it.

The JSON schema (workflow/schemas/params.schema.yaml) is the single source of validation and
defaults: types, ranges, unknown keys, and per-architecture bounds. This module adds the few
checks that span keys (a listed model without a block, a size no scheme defines, the cnn's
depth against its input size and `freeze`), then turns the params into typed, frozen
dataclasses (`Params`, with one `ModelSettings` per model block) that every step reads.
Snakemake's common.smk and the CLIs both come through here, so a config error surfaces when
Snakemake builds the job graph, naming the key, and never halfway through a run.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from hccr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"
NATIVE_SIZE = 64


# ---------------------------------------------------------------- the typed settings


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int | Mapping[str, int]  # params may give one per size; a run's block has it resolved
    lr: float
    freeze: str | int  # "all" | "none" | N first backbone layers


@dataclass(frozen=True)
class Optimizer:
    name: str  # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float | None = None  # sgd only


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool
    patience: int = 3


@dataclass(frozen=True)
class AugmentConfig:
    """The `augment:` block: a small random affine per training image (hccr.training.augment)."""

    enabled: bool = False
    degrees: float = 0.0  # rotation in [-degrees, +degrees]
    translate: float = 0.0  # shift in [-translate, +translate] x image size, per axis
    scale: float = 0.0  # zoom factor in [1 - scale, 1 + scale]
    shear: float = 0.0  # horizontal shear angle in [-shear, +shear] degrees
    views: float = 0.0  # share of images swapped for their predict-path view (independent of enabled)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | AugmentConfig | None, key: str = "augment") -> AugmentConfig:
        """From an `augment:` mapping, checked against the schema's `augment` definition."""
        if spec is None:
            return cls()
        if isinstance(spec, AugmentConfig):
            return spec
        return cls(**checked_part("augment", spec, key))


@dataclass(frozen=True)
class ModelSettings:
    """One model block of params.yaml, validated, defaults filled in.

    `block` is the block exactly as written: the model builders read their architecture keys
    (head, width, ...) from it, and checkpoints store it so a run can be rebuilt.
    """

    name: str
    arch: str
    scheme: str
    input_size: int
    in_chans: int
    pretrained: str
    sizes: tuple[str, ...] | None
    batch_size: int
    gpus: int
    optimizer: Optimizer
    schedule: str
    label_smoothing: float
    early_stopping: EarlyStopping
    augment: AugmentConfig
    phases: tuple[Phase, ...]
    scratch_phases: tuple[Phase, ...]
    compile: bool
    cpu_precision: str
    resume_every_s: float
    block: Mapping[str, Any]
    framing: str = "cell"  # how predict frames a file for this model (hccr.serving.preprocess.FRAMINGS)

    def phases_for(self, start: str) -> tuple[Phase, ...]:
        """A run from scratch uses `scratch_phases`: freezing a random backbone only hurts."""
        return self.scratch_phases if start == "scratch" else self.phases


@dataclass(frozen=True)
class Synthetic:
    writers: int
    samples_per_writer: int
    seed: int


@dataclass(frozen=True)
class Resize:
    sizes: tuple[int, ...]
    filter: str


@dataclass(frozen=True)
class Subsets:
    protocol: str
    test_writers: float
    val_writers: float
    schemes: Mapping[str, Any]
    folds: int  # writer_cv's k

    def ladder(self, scheme: str) -> Mapping[str, Any]:
        """A scheme's sizes: label -> images per class (or `all`)."""
        spec = self.schemes[scheme]
        return spec.get("train_per_class") or spec.get("per_class") or {}


@dataclass(frozen=True)
class Sweep:
    enabled: bool
    model: str
    size: str
    gpus: tuple[int, ...]
    learning_rate: tuple[float, ...]
    batch_size: tuple[int, ...]


@dataclass(frozen=True)
class Resources:
    slots_per_gpu: int
    train_threads: int


@dataclass(frozen=True)
class Evaluate:
    batch_size: int
    calibration_bins: int
    precision: str
    threads: int


@dataclass(frozen=True)
class WriterCv:
    models: tuple[str, ...]
    sizes: tuple[str, ...]
    ensemble: tuple[str, ...] = ()  # models averaged per fold as run ensemble/{size}


@dataclass(frozen=True)
class Export:
    select: str
    tolerance: float
    ensemble: tuple[str, ...] = ()  # model/size runs averaged by the exported model (empty: `select`'s run)


@dataclass(frozen=True)
class Glyphs:
    """The printed-glyph corpus and its pretraining (docs/glyphs.md)."""

    fonts: tuple[str, ...]
    variants: int
    size: int
    characters: str  # empty: all 3,755 level-1 characters
    count: int  # an even spread of this many of them (0: all)
    seed: int
    on_missing: str
    val_fraction: float
    augment: Mapping[str, Any]
    pretrain: Mapping[str, Any]


@dataclass(frozen=True)
class Robustness:
    enabled: bool
    model: str
    limit: int
    batch_size: int
    transforms: Mapping[str, Any]


@dataclass(frozen=True)
class Params:
    """params.yaml as one typed object."""

    data_source: str
    seed: int
    profile: str
    synthetic: Synthetic
    resize: Resize
    subsets: Subsets
    models: tuple[str, ...]
    sizes: tuple[str, ...]
    model: Mapping[str, ModelSettings]
    sweep: Sweep
    resources: Resources
    evaluate: Evaluate
    export: Export
    glyphs: Glyphs
    robustness: Robustness
    views: Mapping[str, Any]  # hccr.data.views.ViewSettings, for the models whose augment.views > 0
    writer_cv: WriterCv


# ---------------------------------------------------------------- loading and checking


def load(path: str | Path = "params.yaml", schema: str | Path = SCHEMA) -> dict[str, Any]:
    """Read params.yaml and check it: schema first, then cross-key rules."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    validate(config, schema)
    return config


@functools.cache
def _schema(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def schema_validator(schema: str | Path = SCHEMA, part: str | None = None) -> jsonschema.Draft202012Validator:
    """A validator for the whole params, or for one `$defs` entry (`part`) such as model_block."""
    root = _schema(str(schema))
    if part is not None:
        root = {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{part}"}
    return jsonschema.Draft202012Validator(root)


def _fill_defaults(validator_class):
    """The validator class that also writes each absent key's schema `default` into the instance."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_DefaultsValidator = _fill_defaults(jsonschema.Draft202012Validator)


def with_defaults(instance: Any, schema: str | Path = SCHEMA, part: str | None = None) -> Any:
    """A deep copy of (already valid) `instance` with the schema's defaults filled in."""
    filled = copy.deepcopy(instance)
    for _ in _DefaultsValidator(schema_validator(schema, part).schema).iter_errors(filled):
        pass  # the instance was validated before; this pass only writes defaults
    return filled


_SCALAR_TYPES = {"integer": (int,), "number": (int, float), "boolean": (bool,)}


def coerce_cli_strings(config: dict[str, Any], schema: str | Path = SCHEMA) -> list[str]:
    """Turn strings into the numbers and booleans the schema asks for, in place.

    Snakemake parses a nested `--config 'model={"cnn": {"batch_size": 64}}'` with YAML's
    BaseLoader, which leaves every leaf a string ('64'). Only a leaf whose schema type is
    integer, number or boolean, and whose text parses as that type, is converted; anything
    else is left for `validate` to report. Returns the dotted keys it converted.
    """
    converted = []
    validator = schema_validator(schema)
    for err in validator.iter_errors(config):
        # A leaf may be typed directly or as one branch of a oneOf (`freeze: all | none | N`).
        typed = [err] if err.validator == "type" else [e for e in err.context or () if e.validator == "type"]
        wanted = [
            w for e in typed for w in ([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)
        ]
        kinds = tuple(t for w in wanted for t in _SCALAR_TYPES.get(w, ()))
        if not kinds or not isinstance(err.instance, str) or not err.absolute_path:
            continue
        try:
            value = yaml.safe_load(err.instance)
        except yaml.YAMLError:
            continue
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            continue
        *parents, leaf = err.absolute_path
        holder = config
        for part in parents:
            holder = holder[part]
        holder[leaf] = value
        converted.append(".".join(str(p) for p in err.absolute_path))
    return converted


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "not" and err.validator_value == {}:
        why = err.schema.get("description") if isinstance(err.schema, dict) else None
        return f"this key is not allowed here{f' ({why})' if why else ''}"
    if err.validator in ("oneOf", "anyOf") and err.context:
        # "not valid under any of the given schemas" says nothing: name what the value breaks
        # in the branch of its own type (freeze: -1 -> "less than the minimum of 0").
        by_branch: dict[int, list[jsonschema.ValidationError]] = {}
        for e in err.context:
            by_branch.setdefault(e.schema_path[0], []).append(e)
        fitting = [(i, errs[0]) for i, errs in sorted(by_branch.items()) if all(e.validator != "type" for e in errs)]
        fitting.sort(key=lambda branch: "type" not in err.validator_value[branch[0]])  # a declared type first
        if fitting:
            e = fitting[0][1]
            where = ".".join(map(str, e.relative_path))
            return f"{where}: {e.message}" if where else e.message
    return err.message


def _raise_errors(errors: list[jsonschema.ValidationError], prefix: str, most: int = 5) -> None:
    """One ConfigError listing the errors (in key order), each naming its key; none: no-op."""
    if not errors:
        return
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    lines = []
    for err in errors[:most]:
        key = ".".join([prefix] * bool(prefix) + [str(p) for p in err.absolute_path]) or "(top level)"
        lines.append(f"params: {key}: {_message(err)}")
    if len(errors) > most:
        lines.append(f"... and {len(errors) - most} more")
    raise ConfigError("\n".join(lines))


def validate(config: dict[str, Any], schema: str | Path = SCHEMA) -> None:
    """Schema validation naming the offending key, then the cross-key checks."""
    _raise_errors(list(schema_validator(schema).iter_errors(config)), "")
    check(config)


def checked_part(part: str, instance: Any, key: str, schema: str | Path = SCHEMA) -> dict[str, Any]:
    """One `$defs` part (e.g. `augment`) checked on its own, returned with its defaults."""
    _raise_errors(list(schema_validator(schema, part).iter_errors(instance)), key)
    return with_defaults(instance, schema, part)


def check(config: dict[str, Any]) -> None:
    """Rules that span keys; each error names the key to fix."""
    blocks = config["model"]
    schemes = config["subsets"]["schemes"]
    for name in config["models"]:
        if name not in blocks:
            raise ConfigError(f"params: models lists {name!r} but model.{name} is not defined")
    for name, block in blocks.items():
        check_model(name, block)
        if block["scheme"] not in schemes:
            raise ConfigError(
                f"params: model.{name}.scheme: unknown scheme {block['scheme']!r}; choose from {sorted(schemes)}"
            )
        ladder = _ladder(config, block["scheme"])
        for size in model_sizes(config, name):
            if size not in ladder:
                raise ConfigError(
                    f"params: size {size!r} of model {name!r} is not in "
                    f"subsets.schemes.{block['scheme']} (has {sorted(ladder)})"
                )
            block_for_size(block, size, f"params: model.{name}")
    _check_writer_cv(config)
    _check_ensemble(config)
    sweep = config["sweep"]
    if sweep["enabled"]:
        if sweep["model"] not in blocks:
            raise ConfigError(f"params: sweep.model: {sweep['model']!r} is not defined under model")
        if sweep["size"] not in _ladder(config, blocks[sweep["model"]]["scheme"]):
            raise ConfigError(f"params: sweep.size: {sweep['size']!r} is not a size of its scheme")
        block_for_size(blocks[sweep["model"]], sweep["size"], f"params: model.{sweep['model']}")


def block_for_size(block: Mapping[str, Any], size: str, key: str) -> dict[str, Any]:
    """A copy of a model block with every phase's per-size epochs ({small: 6, large: 3}) resolved
    for one training-set size; a table without `size` is an error naming the phase. Anything
    malformed is left for the schema to report."""
    sized = copy.deepcopy(dict(block))
    for phases in ("phases", "scratch_phases"):
        specs = sized.get(phases)
        for i, phase in enumerate(specs if isinstance(specs, list) else []):
            epochs = phase.get("epochs") if isinstance(phase, Mapping) else None
            if isinstance(epochs, Mapping):
                if size not in epochs:
                    raise ConfigError(
                        f"{key}.{phases}.{i}.epochs has no entry for size {size!r} (has {sorted(epochs)})"
                    )
                phase["epochs"] = epochs[size]
    return sized


ENSEMBLE = "ensemble"  # the run name of an average of trained runs (hccr.models.ensemble)


def _check_ensemble(config: dict[str, Any]) -> None:
    """export.ensemble's runs must be in the grid, writer_cv.ensemble's models in writer_cv's,
    and each ensemble's members must share one input size."""
    if ENSEMBLE in config["model"]:
        raise ConfigError(f"params: model.{ENSEMBLE}: the name is reserved for averaged runs; rename the block")
    filled = with_defaults(config)
    grid = [f"{m}/{s}" for m, s in runs(config)]
    _check_members("export.ensemble", filled["export"]["ensemble"], grid, config)
    if config["subsets"]["protocol"] == "writer_cv":
        listed = filled["writer_cv"]["ensemble"]
        _check_members("writer_cv.ensemble", listed, filled["writer_cv"]["models"], config)


def _check_members(key: str, members: list[str], allowed: list[str], config: dict[str, Any]) -> None:
    if len(members) == 1:
        raise ConfigError(f"params: {key} lists one run ({members[0]}); list two or more, or none")
    blocks = {}
    for i, member in enumerate(members):
        if member not in allowed:
            raise ConfigError(f"params: {key}.{i}: {member!r} is not one of {', '.join(allowed)}")
        blocks[member] = config["model"][member.split("/")[0]]
    # One input size (one input tensor) and one scheme (the same validation and test images).
    for setting in ("input_size", "scheme"):
        if len({block[setting] for block in blocks.values()}) > 1:
            listed = ", ".join(f"{member} {block[setting]}" for member, block in blocks.items())
            raise ConfigError(f"params: {key}: its runs must share one {setting} ({listed})")


def _check_writer_cv(config: dict[str, Any]) -> None:
    """writer_cv's runs must name defined models and sizes of their schemes."""
    if config["subsets"]["protocol"] != "writer_cv":
        return
    spec = with_defaults(config)["writer_cv"]
    for name in spec["models"]:
        if name not in config["model"]:
            raise ConfigError(f"params: writer_cv.models lists {name!r} but model.{name} is not defined")
        ladder = _ladder(config, config["model"][name]["scheme"])
        for size in spec["sizes"]:
            if size not in ladder:
                raise ConfigError(
                    f"params: writer_cv.sizes: {size!r} is not a size of model {name!r}'s scheme "
                    f"subsets.schemes.{config['model'][name]['scheme']} (has {sorted(ladder)})"
                )


def cnn_layers(width: list[int], convs_per_block: int) -> int:
    """Backbone layers of the cnn as `freeze: N` counts them: the input, then per block
    `convs_per_block` x (conv, BatchNorm, ReLU) and a max-pool (hccr.models.freeze)."""
    return 1 + len(width) * (3 * convs_per_block + 1)


def check_model(name: str, block: Mapping[str, Any]) -> None:
    """A model block's cross-key rules (the schema bounds the other archs on its own)."""
    if block["arch"] != "cnn":
        return
    filled = with_defaults(block, part="model_block")
    width, convs = filled["width"], filled["convs_per_block"]
    smallest = 2 ** len(width)
    if block["input_size"] < smallest:
        raise ConfigError(
            f"params: model.{name}.input_size: {block['input_size']} is too small for the cnn's "
            f"{len(width)} pooling blocks (needs >= {smallest})"
        )
    layers = cnn_layers(width, convs)
    for key in ("phases", "scratch_phases"):
        for i, phase in enumerate(block[key]):
            if isinstance(phase["freeze"], int) and phase["freeze"] > layers:
                raise ConfigError(
                    f"params: model.{name}.{key}.{i}.freeze: {phase['freeze']} is more than the {layers} "
                    f"backbone layers of this cnn (width {list(width)}, convs_per_block {convs}); "
                    "use freeze: all to freeze all of it"
                )


def validate_model(name: str, block: Any, schema: str | Path = SCHEMA) -> None:
    """One model block on its own (as the train step gets it), errors named `model.<name>.<key>`."""
    _raise_errors(list(schema_validator(schema, "model_block").iter_errors(block)), f"model.{name}")
    check_model(name, block)


# ---------------------------------------------------------------- the typed form


def _phases(specs: list[Mapping[str, Any]]) -> tuple[Phase, ...]:
    return tuple(Phase(name=s["name"], epochs=s["epochs"], lr=float(s["lr"]), freeze=s["freeze"]) for s in specs)


def model_settings(name: str, block: Any, schema: str | Path = SCHEMA) -> ModelSettings:
    """A model block, checked, as `ModelSettings`."""
    validate_model(name, block, schema)
    filled = with_defaults(block, schema, "model_block")
    return ModelSettings(
        name=name,
        arch=filled["arch"],
        scheme=filled["scheme"],
        input_size=filled["input_size"],
        in_chans=filled["in_chans"],
        pretrained=filled["pretrained"],
        sizes=tuple(filled["sizes"]) if "sizes" in filled else None,
        batch_size=filled["batch_size"],
        gpus=filled["gpus"],
        optimizer=Optimizer(**{k: float(v) if k != "name" else v for k, v in filled["optimizer"].items()}),
        schedule=filled["schedule"],
        label_smoothing=float(filled["label_smoothing"]),
        early_stopping=EarlyStopping(**filled["early_stopping"]),
        augment=AugmentConfig(**filled["augment"]),
        phases=_phases(filled["phases"]),
        scratch_phases=_phases(filled["scratch_phases"]),
        compile=filled["compile"],
        cpu_precision=filled["cpu_precision"],
        resume_every_s=float(filled["resume_every_s"]),
        block=copy.deepcopy(dict(block)),
        framing=filled["framing"],
    )


def settings(config: dict[str, Any], schema: str | Path = SCHEMA) -> Params:
    """The whole params, checked, as one `Params` object."""
    validate(config, schema)
    filled = with_defaults(config, schema)
    sweep = filled["sweep"]
    return Params(
        data_source=filled["data_source"],
        seed=filled["seed"],
        profile=filled["profile"],
        synthetic=Synthetic(**filled["synthetic"]),
        resize=Resize(sizes=tuple(filled["resize"]["sizes"]), filter=filled["resize"]["filter"]),
        subsets=Subsets(**filled["subsets"]),
        models=tuple(filled["models"]),
        sizes=tuple(filled["sizes"]),
        model={name: model_settings(name, block, schema) for name, block in config["model"].items()},
        sweep=Sweep(
            enabled=sweep["enabled"],
            model=sweep["model"],
            size=sweep["size"],
            gpus=tuple(sweep["gpus"]),
            learning_rate=tuple(sweep["learning_rate"]),
            batch_size=tuple(sweep["batch_size"]),
        ),
        resources=Resources(**filled["resources"]),
        evaluate=Evaluate(**filled["evaluate"]),
        export=Export(**{**filled["export"], "ensemble": tuple(filled["export"]["ensemble"])}),
        glyphs=Glyphs(**{**filled["glyphs"], "fonts": tuple(filled["glyphs"]["fonts"])}),
        robustness=Robustness(**filled["robustness"]),
        views=filled["views"],
        writer_cv=WriterCv(**{key: tuple(value) for key, value in filled["writer_cv"].items()}),
    )


# ---------------------------------------------------------------- what the DAG asks


def _ladder(config: dict[str, Any], scheme: str) -> dict[str, Any]:
    spec = config["subsets"]["schemes"][scheme]
    return spec.get("train_per_class") or spec.get("per_class") or {}


def model_sizes(config: dict[str, Any], model: str) -> list[str]:
    """The sizes one model trains at: its own `sizes`, else the top-level list."""
    return list(config["model"][model].get("sizes") or config["sizes"])


def runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The (model, size) grid Snakemake expands."""
    return [(m, s) for m in config["models"] for s in model_sizes(config, m)]


def scheme_sizes(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (scheme, size) the subset step writes."""
    return [(scheme, size) for scheme in config["subsets"]["schemes"] for size in _ladder(config, scheme)]


def single_split_protocol(config: dict[str, Any]) -> str:
    """The protocol of the grid's one split: writer_cv's is the `writer` split (its folds are extra)."""
    protocol = config["subsets"]["protocol"]
    return "writer" if protocol == "writer_cv" else protocol


def cv_folds(config: dict[str, Any]) -> list[int]:
    """The writer folds 0..k-1 under `writer_cv`; none under any other protocol."""
    subsets = with_defaults(config["subsets"], part="subsets")
    return list(range(subsets["folds"])) if subsets["protocol"] == "writer_cv" else []


def cv_runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The (model, size) pairs trained once per writer fold; none unless the protocol is writer_cv."""
    if not cv_folds(config):
        return []
    spec = with_defaults(config)["writer_cv"]
    return [(m, s) for m in spec["models"] for s in spec["sizes"]]


def cv_ensembles(config: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """{size: the member runs} of writer_cv.ensemble, scored per fold as run ensemble/{size}."""
    if not cv_folds(config):
        return {}
    spec = with_defaults(config)["writer_cv"]
    if not spec["ensemble"]:
        return {}
    return {size: [(model, size) for model in spec["ensemble"]] for size in spec["sizes"]}


def resize_sizes(config: dict[str, Any]) -> list[int]:
    """Native size, the params' sizes, and every model's input size."""
    sizes = {NATIVE_SIZE, *config["resize"]["sizes"]}
    sizes.update(block["input_size"] for block in config["model"].values())
    return sorted(sizes)


def format_lr(lr: float) -> str:
    """A learning rate as it appears in a sweep folder name (1e-04 -> '0.0001')."""
    return format(float(lr), "g")


def sweep_cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's grid: one dict (gpus, lr, batch) per cell, in Table 2's order."""
    sweep = config["sweep"]
    if not sweep["enabled"]:
        return []
    return [
        {"gpus": g, "lr": format_lr(lr), "batch": b}
        for g, lr, b in itertools.product(sweep["gpus"], sweep["learning_rate"], sweep["batch_size"])
    ]


def train_config(
    config: dict[str, Any],
    model: str,
    size: str,
    *,
    gpus: int | None = None,
    lr: float | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """The model's block as the train step gets it for one training-set size: per-size
    epochs resolved to that size's number, and a sweep cell's overrides applied."""
    block = block_for_size(config["model"][model], size, f"params: model.{model}")
    if gpus is not None:
        block["gpus"] = int(gpus)
    if batch is not None:
        block["batch_size"] = int(batch)
    if lr is not None:
        for phase in block["phases"] + block["scratch_phases"]:
            phase["lr"] = float(lr)
    return block


def glyph_pretrain_config(config: dict[str, Any], model: str, init: str) -> dict[str, Any]:
    """The block a glyph pretraining trains: model `model`'s network, at the corpus's size, from `init`.

    Only the network's shape is kept (arch, in_chans, widths, head); the schedule is
    `glyphs.pretrain`'s, every layer trains, and the corpus is already augmented.
    `glyphs.pretrain.dropout` / `drop_path_rate`, where set, replace the block's own for the
    pretraining only: neither changes a weight's shape, so the start still loads strictly.
    """
    glyphs = with_defaults(config.get("glyphs") or {}, part="glyphs")
    pretrain = glyphs["pretrain"]
    block = copy.deepcopy(config["model"][model])
    block.pop("sizes", None)
    phases = pretrain["phases"]
    block.update(
        pretrained=init,
        input_size=glyphs["size"],
        batch_size=pretrain["batch_size"],
        phases=copy.deepcopy(phases),
        scratch_phases=copy.deepcopy(phases),
        augment={**block.get("augment", {}), "enabled": False, "views": 0.0},
        early_stopping={**block.get("early_stopping", {}), "enabled": False},
    )
    if pretrain.get("dropout") is not None:
        if block["arch"] == "cnn":  # the cnn's head dropout is its `dropout` key
            block["dropout"] = pretrain["dropout"]
        else:
            block["head"] = {**block.get("head", {}), "dropout": pretrain["dropout"]}
    if pretrain.get("drop_path_rate") is not None and block["arch"].startswith("tf_efficientnet"):
        block["drop_path_rate"] = pretrain["drop_path_rate"]  # only EfficientNets have stochastic depth
    validate_model(model, block)
    return block


def json_object_arg(text: str, flag: str = "--config-json") -> dict[str, Any]:
    """A CLI argument that is a JSON object, given inline (`{...}`) or as a path to a file."""
    source = flag
    if not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{flag}: {path}: cannot read ({err.strerror})") from None
        source = str(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    return value
