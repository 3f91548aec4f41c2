"""A vendor serving HTTPS is not advertised with zeroconf, and says why (s21).

A zeroconf advertisement names a host and port; the agent fetches the document from
``http://<address>:<port>`` (§13.2-4: the TXT record carries no scheme). Before, ``vrm vendor
serve --tls-cert … --tls-key …`` advertised itself all the same ("advertised as _vrm._tcp.local.
on 127.0.0.1"): every agent that heard it spoke plain HTTP to its TLS port and listed it as
"its discovery document could not be fetched". Now it is not advertised, and the vendor is
told why. Run in a private network namespace (tests/test_discovery.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import trustme

from tests._cli_helpers import ROOT, VENDOR_FILES, VRM, cli_env
from tests.test_discovery import _namespace_or_skip


def test_a_vendor_serving_https_is_not_advertised(tmp_path: Path) -> None:
    prefix = _namespace_or_skip()
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = [*prefix, *VRM, "vendor", "serve", "--config", str(VENDOR_FILES / "outfitters.toml"),
            "--host", "127.0.0.1", "--port", "0", "--memory", "--json",
            "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env=cli_env(tmp_path / "home")) as vendor:  # fmt: skip
        assert vendor.stdout is not None
        try:
            events = []
            for line in vendor.stdout:  # listening, then (not_)advertised
                events.append(json.loads(line))
                if events[-1]["event"] in ("advertised", "not_advertised"):
                    break
        finally:
            vendor.terminate()
            vendor.wait(timeout=30)
    assert events[0]["url"].startswith("https://"), events
    assert events[-1]["event"] == "not_advertised", events
    assert "HTTPS" in events[-1]["message"], events
