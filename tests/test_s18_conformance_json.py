"""``vrm conformance URL --json`` prints one report even when the suite cannot run (exit 2):
it printed nothing on stdout, so a CI job reading the JSON failed on a parse error instead of
reading the outcome (seen by s18-cli-day at ``vrmproto/testing/_cli.py:138``)."""

from __future__ import annotations

import json

import jsonschema

from tests._cli_helpers import vrm
from tests._ports import closed_port
from vrmproto.testing._report import schema_path


def test_a_run_that_cannot_start_still_prints_its_report_as_json() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    r = vrm("conformance", url, "--json", "--seed", "7", "--only", "ENV-*", home=None)
    assert r.code == 2, r
    report = json.loads(r.stdout)
    jsonschema.Draft202012Validator(json.loads(schema_path().read_text())).validate(report)
    assert (report["target"], report["seed"], report["only"]) == (url, 7, ["ENV-*"])
    assert report["summary"]["exit_code"] == 2
    assert report["cases"] == []
    assert "refused" in report["error"], report["error"]
    assert "the suite cannot run" in r.stderr
