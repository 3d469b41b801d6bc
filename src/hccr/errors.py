"""Errors that reach the user: each message names the file, row or key at fault."""


class HccrError(Exception):
    """Base class: CLIs print `error: <message>` and exit with status 2."""


class DataError(HccrError):
    """The dataset (archive, CSV, images, splits) is missing, malformed or inconsistent."""


class ConfigError(HccrError):
    """params.yaml (or an override) names an unknown key or an impossible value."""
