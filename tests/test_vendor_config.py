"""Issue 13, finding 3: a vendor's TOML file and ``VRM_*`` variables set every limit, the
listener, the store, logging and metrics, through one schema; mistakes name the file (or the
variable), the field and the field meant; TOML dates are read as dates.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import ROOT, cli_env

from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto.cli import parse_vendor_config
from vrmproto.cli._errors import CliError
from vrmproto.server import DEFAULT_CONNECTION_LIMITS, ConnectionLimits
from vrmproto.server._config import ConfigError, parse_vendor_file

BASE = 'name = "Corner Shop"\naccepts_terms = "all"\n'


def _changed(cls: type[Any], default: Any, name: str) -> int:
    """A value other than the default that ``cls`` accepts for ``name`` alone."""
    value = getattr(default, name)
    for candidate in (value + 1, value - 1):
        try:
            cls(**{name: candidate})
        except ValueError:
            continue
        return int(candidate)
    raise AssertionError(name)


@pytest.mark.parametrize(("section", "cls", "default"), [
    ("limits", Limits, DEFAULT_LIMITS),
    ("connections", ConnectionLimits, DEFAULT_CONNECTION_LIMITS),
])  # fmt: skip
def test_every_limit_is_settable_in_the_file_and_the_environment(
    section: str, cls: type[Any], default: Any
) -> None:
    for f in dataclasses.fields(cls):
        value = _changed(cls, default, f.name)
        file = parse_vendor_file(tomllib.loads(BASE + f"[{section}]\n{f.name} = {value}\n"))
        got = file.limits_value() if section == "limits" else file.connection_limits()
        assert getattr(got, f.name) == value, f.name
        env = {f"VRM_{section.upper()}_{f.name.upper()}": str(value)}
        file = parse_vendor_file(tomllib.loads(BASE), environ=env)
        got = file.limits_value() if section == "limits" else file.connection_limits()
        assert getattr(got, f.name) == value, f.name


def test_the_limits_reach_the_endpoint() -> None:
    config = parse_vendor_config(tomllib.loads(BASE + "[limits]\nmax_depth = 8\n"))
    assert config.limits.max_depth == 8
    assert config.policy().accepts_terms


def test_store_logging_metrics_and_server_are_settable() -> None:
    text = BASE + """
[server]
host = "0.0.0.0"
port = 8701
public_url = "https://shop.example/vrm"
trusted_proxies = ["10.0.0.0/8", "::1"]
[store]
kind = "memory"
[logging]
format = "json"
level = "debug"
[metrics]
enabled = true
port = 9464
"""
    file = parse_vendor_file(tomllib.loads(text))
    assert (file.server.port, file.store.kind, file.logging.format) == (8701, "memory", "json")
    assert (file.metrics.enabled, file.metrics.port) == (True, 9464)
    deployment = file.server.deployment()
    assert deployment.public_url == "https://shop.example/vrm"
    assert deployment.trusts("10.1.2.3")
    assert deployment.trusts("::1")
    assert not deployment.trusts("192.0.2.1")
    env = {"VRM_STORE_KIND": "sqlite", "VRM_LOGGING_FORMAT": "human", "VRM_METRICS_ENABLED":
           "false", "VRM_SERVER_TRUSTED_PROXIES": "192.0.2.0/24, 127.0.0.1",
           "VRM_HOME": "/elsewhere"}  # fmt: skip
    file = parse_vendor_file(tomllib.loads(text), environ=env)
    assert (file.store.kind, file.logging.format, file.metrics.enabled) == (
        "sqlite", "human", False)
    assert file.server.trusted_proxies == ["192.0.2.0/24", "127.0.0.1"]


def test_a_postgresql_store_is_named_by_its_url() -> None:
    """Issue 15: ``store = "postgresql://…"`` (or ``[store] url``, or ``VRM_STORE_URL``) serves
    the vendor from PostgresStore; anything else in ``store`` is refused by name."""
    short = parse_vendor_file(tomllib.loads(BASE + 'store = "postgresql://vrm@db1/vrm"\n'))
    assert (short.store.kind, short.store.url) == ("postgresql", "postgresql://vrm@db1/vrm")
    table = parse_vendor_file(tomllib.loads(BASE + '[store]\nurl = "postgres://db/vrm"\n'))
    assert (table.store.kind, table.store.url) == ("postgresql", "postgres://db/vrm")
    env = parse_vendor_file(tomllib.loads(BASE), environ={"VRM_STORE_URL": "postgresql://e/v"})
    assert (env.store.kind, env.store.url) == ("postgresql", "postgresql://e/v")
    assert parse_vendor_file(tomllib.loads(BASE)).store.kind == "sqlite"
    with pytest.raises(ConfigError, match=r"store: .*postgresql:// URL"):
        parse_vendor_file(tomllib.loads(BASE + 'store = "sqlite:///vendor.db"\n'))
    with pytest.raises(ConfigError, match="needs url"):
        parse_vendor_file(tomllib.loads(BASE + '[store]\nkind = "postgresql"\n'))
    with pytest.raises(ConfigError, match="url is for a postgresql store"):
        parse_vendor_file(tomllib.loads(BASE + '[store]\nkind = "sqlite"\nurl = "postgresql://x"\n'))


def test_a_toml_date_is_read_as_a_date() -> None:
    """Finding 3: ``collected = 2026-01-01`` crashed with TypeError."""
    text = BASE + """
[[observed]]
field = "rental_count"
value = "3"
collected = 2026-01-01

[[observed]]
field = "last_rental"
value = "SLC"
collected = 2026-01-01T12:00:00Z
"""
    config = parse_vendor_config(tomllib.loads(text), source="shop.toml")
    assert [r.collected for r in config.observed] == [1_767_225_600_000, 1_767_268_800_000]


@pytest.mark.parametrize(("text", "words"), [
    (BASE.replace("accepts_terms", "acepts_terms"),
     ["shop.toml", "acepts_terms", "did you mean 'accepts_terms'"]),
    (BASE + "[limits]\nmax_envelope_byte = 5\n",
     ["shop.toml", "limits.max_envelope_byte", "did you mean 'max_envelope_bytes'"]),
    (BASE + "[[catalogue]]\ndescripion = 'x'\nkeywords = ['a']\nprice = '1 USD'\n",
     ["shop.toml", "catalogue[0].descripion", "did you mean 'description'"]),
    (BASE + "[limits]\nmax_depth = -1\n", ["shop.toml", "limits.max_depth", "greater than 0"]),
    (BASE + "[server]\ntrusted_proxies = ['not a network']\n",
     ["shop.toml", "server.trusted_proxies", "not a network"]),
    (BASE + "[server]\npublic_url = 'http://shop.example/vrm'\n",
     ["shop.toml", "must be https", "§12.13-3"]),
])  # fmt: skip
def test_a_mistake_names_the_file_the_field_and_the_field_meant(
    text: str, words: list[str]
) -> None:
    with pytest.raises(CliError) as caught:
        parse_vendor_config(tomllib.loads(text), source="shop.toml")
    for word in words:
        assert word in caught.value.message


def test_a_mistaken_variable_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_vendor_file(tomllib.loads(BASE), environ={"VRM_LIMITS_MAX_DEPT": "8"})
    assert "VRM_LIMITS_MAX_DEPT" in str(caught.value)
    assert "did you mean 'max_depth'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_vendor_file(tomllib.loads(BASE), environ={"VRM_LIMITS_MAX_DEPTH": "deep"})
    assert "environment variable VRM_LIMITS_MAX_DEPTH: limits.max_depth" in str(caught.value)


def _check_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vrmproto.cli", "vendor", "check-config", str(path)],
        capture_output=True, text=True, env={**cli_env(None), **env}, cwd=ROOT, check=False,
        timeout=60,
    )  # fmt: skip


def test_vrm_vendor_check_config(tmp_path: Path) -> None:
    good = tmp_path / "shop.toml"
    good.write_text(BASE + "[metrics]\nenabled = true\n")
    r = _check_config(good)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    assert "Corner Shop" in r.stdout
    assert "metrics on" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "vrmproto.cli", "vendor", "check-config", str(good), "--json"],
        capture_output=True, text=True, env=cli_env(None), cwd=ROOT, check=True, timeout=60,
    )  # fmt: skip
    data = json.loads(r.stdout)
    assert (data["ok"], data["name"], data["metrics"]["enabled"]) == (True, "Corner Shop", True)
    assert data["limits"]["max_depth"] == DEFAULT_LIMITS.max_depth
    r = _check_config(good, VRM_METRICS_ENABLED="maybe")
    assert r.returncode == 2
    assert r.stderr.startswith("vrm: environment variable VRM_METRICS_ENABLED: metrics.enabled")
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[logging]\nformt = 'json'\n")
    r = _check_config(bad)
    assert r.returncode == 2
    assert f"{bad}: logging.formt: unknown field (did you mean 'format'?)" in r.stderr


def test_workers_are_set_in_the_server_section_or_the_environment() -> None:
    """Issue 15: ``[server] workers`` or ``VRM_SERVER_WORKERS``; above 1 only on PostgreSQL,
    and without a metrics listener of its own (one port cannot be N listeners)."""
    pg = BASE + 'store = "postgresql://vrm@db1/vrm"\n'
    assert parse_vendor_file(tomllib.loads(pg)).server.workers == 1
    file = parse_vendor_file(tomllib.loads(pg + "[server]\nworkers = 4\n"))
    assert file.server.workers == 4
    env = parse_vendor_file(tomllib.loads(pg), environ={"VRM_SERVER_WORKERS": "3"})
    assert env.server.workers == 3
    with pytest.raises(ConfigError, match="needs a postgresql store"):
        parse_vendor_file(tomllib.loads(BASE), environ={"VRM_SERVER_WORKERS": "2"})
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        parse_vendor_file(tomllib.loads(pg + "[server]\nworkers = 2\n[metrics]\nport = 9464\n"))
    with pytest.raises(ConfigError, match="workers"):
        parse_vendor_file(tomllib.loads(pg + "[server]\nworkers = 0\n"))
