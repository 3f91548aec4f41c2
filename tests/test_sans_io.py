"""The core stays sans-IO (STYLE §1, §5): no sockets, event loop, database, clock or randomness.

Time and randomness are arguments; transports and storage are the layers around the core. These
tests read the core's source (they do not trust the import graph at run time alone) and also
check what importing :mod:`vrmproto` pulls in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = [
    "_codec.py",
    "_keys.py",
    "_errors.py",
    "_fields.py",
    "_messages.py",
    "_envelope.py",
    "_state.py",
    "_relationship.py",
    "_rules.py",
    "_steps.py",
    "_history.py",
    "_vocab.py",
    "_limits.py",
    "_binding.py",
    "crm/_changes.py",  # what a feed event asks of a CRM (issue 14)
    "_http1.py",  # the agent client's HTTP/1.1 response reader (issue 12)
]
#: Modules that do I/O, run an event loop, read the clock or draw randomness.
FORBIDDEN_MODULES = {
    "asyncio", "aiohttp", "sqlite3", "socket", "zeroconf", "time", "random", "secrets",
}
#: Attributes of otherwise harmless modules that are I/O or randomness.
FORBIDDEN_NAMES = {("os", "urandom")}


def _violations(source: str) -> list[str]:
    """Every forbidden import or use in ``source``, as readable strings."""
    found: list[str] = []
    tree = ast.parse(source)
    os_aliases = {
        alias.asname or "os"
        for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names if alias.name == "os"
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] in FORBIDDEN_MODULES
            )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import …")
            found.extend(
                f"line {node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if (node.module, alias.name) in FORBIDDEN_NAMES
            )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "__import__":
                found.append(f"line {node.lineno}: __import__(…)")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in os_aliases
            and ("os", node.attr) in FORBIDDEN_NAMES
        ):
            found.append(f"line {node.lineno}: os.{node.attr}")
    return found


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_no_io(name: str) -> None:
    path = ROOT / "vrmproto" / name
    assert path.exists(), f"core module {name} is missing"
    assert _violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import asyncio.events as ev",
        "from asyncio import sleep",
        "import aiohttp.web",
        "from sqlite3 import connect",
        "import socket",
        "from zeroconf import Zeroconf",
        "import time",
        "from time import time_ns",
        "import random",
        "from os import urandom",
        "import os\nx = os.urandom(16)",
        "import os as o\nx = o.urandom(16)",
        "__import__('time')",
        "def f():\n    import time\n    return time.time()",
    ],
)
def test_the_checker_catches_each_form(source: str) -> None:
    """The source check itself: each way of reaching I/O is caught."""
    assert _violations(source)


def test_the_checker_allows_the_pure_standard_library() -> None:
    assert _violations("import os.path\nimport hashlib\nfrom os import fspath\nimport enum") == []


def test_importing_vrmproto_pulls_in_no_io_modules() -> None:
    """A fresh interpreter importing vrmproto loads no event loop, HTTP, database or mDNS."""
    code = (
        "import json, sys, vrmproto\n"
        "print(json.dumps(sorted(m for m in ('asyncio', 'aiohttp', 'sqlite3', 'zeroconf')"
        " if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
        timeout=60,
    )
    assert json.loads(out.stdout) == []
