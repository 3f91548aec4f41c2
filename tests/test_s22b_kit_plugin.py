"""The pytest plugin in a builder's own suite (vrmproto/testing/pytest_plugin.py)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "vrmproto.server", "vrmproto.client", "vrmproto.testing._runner")


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin (entry point ``pytest11``) in every run of every suite in an
    environment where vrmproto is installed. Without ``--vrm-conformance`` it "imports nothing
    heavy": not the HTTP stack, the server, the client or the suite runner — half a second
    added to each ``pytest`` start of a builder's unrelated suite, before."""
    code = (
        "import sys, vrmproto.testing.pytest_plugin\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == ""


def test_the_testing_package_still_exports_its_names_on_use() -> None:
    code = (
        "import vrmproto.testing as t\n"
        "from vrmproto.testing import MemoryTransport, run_suite, case\n"
        "assert t.MemoryTransport is MemoryTransport and callable(run_suite) and callable(case)\n"
        "assert set(t.__all__) <= set(dir(t))\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "ok"
