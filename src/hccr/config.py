"""params.yaml: loading, validation, and the questions the DAG asks of it.

The JSON schema (workflow/schemas/params.schema.yaml) checks types and unknown keys; this
module adds the checks that span several keys (a listed model without a block, a size that
no scheme defines, ...) and derives what the rules need (run grid, sweep cells, sizes).
Snakemake's common.smk and the CLIs both use it, so the two never disagree.
"""

from __future__ import annotations

import copy
import json
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from hccr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"
NATIVE_SIZE = 64


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


def schema_validator(schema: str | Path = SCHEMA) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(yaml.safe_load(Path(schema).read_text(encoding="utf-8")))


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
        wanted = err.validator_value if err.validator == "type" else None
        wanted = [wanted] if isinstance(wanted, str) else (wanted or [])
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


def validate(config: dict[str, Any], schema: str | Path = SCHEMA) -> None:
    """Schema validation naming the offending key, then the cross-key checks."""
    errors = sorted(schema_validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"params: {key}: {err.message}")
    check(config)


def check(config: dict[str, Any]) -> None:
    """Rules that span keys; each error names the key to fix."""
    blocks = config["model"]
    schemes = config["subsets"]["schemes"]
    for name in config["models"]:
        if name not in blocks:
            raise ConfigError(f"params: models lists {name!r} but model.{name} is not defined")
    for name, block in blocks.items():
        if block["scheme"] not in schemes:
            raise ConfigError(
                f"params: model.{name}.scheme: unknown scheme {block['scheme']!r}; "
                f"choose from {sorted(schemes)}"
            )
        ladder = _ladder(config, block["scheme"])
        for size in model_sizes(config, name):
            if size not in ladder:
                raise ConfigError(
                    f"params: size {size!r} of model {name!r} is not in "
                    f"subsets.schemes.{block['scheme']} (has {sorted(ladder)})"
                )
    sweep = config["sweep"]
    if sweep["enabled"]:
        if sweep["model"] not in blocks:
            raise ConfigError(f"params: sweep.model: {sweep['model']!r} is not defined under model")
        if sweep["size"] not in _ladder(config, blocks[sweep["model"]]["scheme"]):
            raise ConfigError(f"params: sweep.size: {sweep['size']!r} is not a size of its scheme")


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
    config: dict[str, Any], model: str, *, gpus: int | None = None, lr: float | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """The model's block as the train step gets it, with a sweep cell's overrides applied."""
    block = copy.deepcopy(config["model"][model])
    if gpus is not None:
        block["gpus"] = int(gpus)
    if batch is not None:
        block["batch_size"] = int(batch)
    if lr is not None:
        for phase in block["phases"] + block["scratch_phases"]:
            phase["lr"] = float(lr)
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
