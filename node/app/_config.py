"""The headless node's config file: `config.toml` in the data dir, read with `tomllib`.

It holds what `rumor run` would otherwise need on its command line (where to listen, the
DHT port, bootstrap nodes, the metrics address). Reading is strict: an unknown key, a
wrong type or a bad address is a `ConfigError` with a one-line message naming the file.
Addresses are host:port with ASCII digits and IPv6 hosts in brackets; `listen` must be an
IP address (it is bound as given), the others may be DNS names, checked for syntax only.
This module never touches the network or the node; it only reads and writes the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._addresses import parse_address
from .._datadir import CONFIG_FILE

__all__ = ["CONFIG_FILE", "Config", "ConfigError", "load_config", "parse_host_port", "write_config"]

DEFAULT_PORT: Final = 7340  # links on TCP and the DHT on UDP share the number


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message is one line for people."""


def parse_host_port(
    text: str, what: str = "address", *, allow_zero: bool = True, ip_only: bool = False
) -> str:
    """`text` if it is host:port (or [v6]:port) as `_addresses.parse_address` reads it;
    raises ConfigError naming `what` otherwise."""
    try:
        parse_address(text, ip_only=ip_only, allow_zero=allow_zero)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return text


@dataclass(frozen=True, slots=True)
class Config:
    """What `rumor run` needs; command-line options replace fields with `override`."""

    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    advertise: str = ""  # "" : the listening address (loopback for a wildcard host)
    dht_port: int = DEFAULT_PORT
    bootstrap: tuple[str, ...] = ()
    metrics: str = ""  # "" : no metrics endpoint
    verify_workers: int = 1

    def __post_init__(self) -> None:
        # Bound as given: a name would need resolving, and could mean several addresses.
        parse_host_port(self.listen, "listen", ip_only=True)
        if self.advertise:
            parse_host_port(self.advertise, "advertise", allow_zero=False)
        if not 0 <= self.dht_port <= 65535:
            raise ConfigError(f"dht_port out of range: {self.dht_port}")
        for address in self.bootstrap:
            parse_host_port(address, "bootstrap", allow_zero=False)
        if self.metrics:
            parse_host_port(self.metrics, "metrics")
        if not 0 <= self.verify_workers <= 64:
            raise ConfigError(f"verify_workers must be 0..64, not {self.verify_workers}")

    def override(self, **options: object) -> Config:
        """A copy with the options that were given (not None) in place."""
        given = {key: value for key, value in options.items() if value is not None}
        if isinstance(given.get("bootstrap"), list):
            given["bootstrap"] = tuple(given["bootstrap"])  # type: ignore[arg-type]
        return dataclasses.replace(self, **given)  # type: ignore[arg-type]

    @property
    def dht_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def invite_address(self) -> str | None:
        """The address to put in invites made while no node runs, if a useful one is known."""
        if self.advertise:
            return self.advertise
        host, _, port = self.listen.rpartition(":")
        if int(port) == 0:
            return None  # any free port: the next run listens elsewhere
        host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        return f"{host}:{port}"


_TYPES: Final = {
    "listen": str,
    "advertise": str,
    "dht_port": int,
    "bootstrap": list,
    "metrics": str,
    "verify_workers": int,
}

_TEMPLATE: Final = """\
# rumor node configuration. Options given to `rumor run` override these.

# host:port where links from peers are accepted (TCP); port 0 picks a free port.
listen = {listen}
# host:port put in invites and DHT records; "" means the listening address
# (127.0.0.1 for 0.0.0.0): set it to this machine's public address.
advertise = {advertise}
# UDP port of the DHT node, on the listen host; 0 picks a free port.
dht_port = {dht_port}
# DHT nodes to join through, as "host:port".
bootstrap = {bootstrap}
# host:port serving Prometheus metrics at /metrics; "" turns them off.
metrics = {metrics}
# signature-verification processes; 0 verifies in the node's own process.
verify_workers = {verify_workers}
"""


def _toml_string(text: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(text, ensure_ascii=True)


def write_config(path: Path, config: Config) -> None:
    """Write `config` to `path` atomically (a temporary file renamed into place)."""
    text = _TEMPLATE.format(
        listen=_toml_string(config.listen),
        advertise=_toml_string(config.advertise),
        dht_port=config.dht_port,
        bootstrap="[" + ", ".join(_toml_string(b) for b in config.bootstrap) + "]",
        metrics=_toml_string(config.metrics),
        verify_workers=config.verify_workers,
    )
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, path)


def load_config(path: Path) -> Config:
    """The config in `path`; raises ConfigError (one line) for anything wrong with it."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"no config file at {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in data.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        # bool is an int in Python; in a config file it is a mistake.
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(
                f"config file {path}: {key} must be a {expected.__name__}, not {value!r}"
            )
    bootstrap = data.get("bootstrap", [])
    if not all(isinstance(b, str) for b in bootstrap):
        raise ConfigError(f'config file {path}: bootstrap must be a list of "host:port"')
    data["bootstrap"] = tuple(bootstrap)
    try:
        return Config(**data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
