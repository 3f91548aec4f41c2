"""``vrm conformance URL``: the suite's command line (also ``python -m vrmproto.testing URL``).

Exit codes: 0 every MUST passed (and every SHOULD under ``--strict``); 1 something failed or a
case crashed; 2 the suite could not run (bad URL or options, no or unparsable discovery document).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from ._case import Registry, load_default_cases
from ._report import ReportPaths, Transcripts, cannot_run_data, report_data, trimmed, write_reports
from ._runner import EXIT_CANNOT_RUN, SuiteCannotRun, run_suite
from ._terminal import TerminalReporter, print_case_list, print_clause_list

__all__ = ["conformance", "make_command"]


def make_command(registry: Registry | None = None, name: str = "conformance") -> click.Command:
    """The ``conformance`` click command, testing the cases of ``registry`` (default: the suite)."""

    @click.command(name)
    @click.argument("url", required=False)
    @click.option("--strict", is_flag=True, help="Count SHOULD misses (NON_STRICT) as failures.")
    @click.option(
        "--only",
        multiple=True,
        metavar="GLOB",
        help="Run only cases whose id or a tag matches (repeatable), e.g. 'ENV-*' or 'replay'.",
    )
    @click.option(
        "--skip", multiple=True, metavar="GLOB", help="Leave out matching cases (repeatable)."
    )
    @click.option(
        "--list",
        "list_only",
        is_flag=True,
        help="List the cases, then each clause with the cases that check it, and exit.",
    )
    @click.option(
        "--by-clause",
        is_flag=True,
        help="With --list: only the clauses, each with the cases about it and those that also "
        "cover it (with --json: one object per clause).",
    )
    @click.option(
        "--report",
        "report_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Write report.json, junit.xml, index.html and replay files into DIR.",
        metavar="DIR",
    )
    @click.option(
        "--transcripts",
        type=click.Choice(["failures", "all"]),
        default="failures",
        show_default=True,
        help="Whose full transcripts (exchanges, hex, replay files) --report keeps.",
    )
    @click.option("--seed", type=click.IntRange(min=0), help="Reproduce a run's order and data.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=30.0,
        show_default=True,
        help="Time limit per case, in seconds.",
    )
    def command(
        *,
        url: str | None,
        strict: bool,
        only: tuple[str, ...],
        skip: tuple[str, ...],
        list_only: bool,
        by_clause: bool,
        report_dir: Path | None,
        transcripts: Transcripts,
        seed: int | None,
        as_json: bool,
        timeout: float,
    ) -> None:
        """Test the vrmproto endpoint at URL against the spec's numbered clauses.

        Every case is tied to a spec clause: MUST misses fail the run, SHOULD misses are
        NON_STRICT (failures only with --strict). Exit code 0: all MUST passed; 1: a failure;
        2: the suite could not run.
        """
        reg = load_default_cases() if registry is None else registry
        console = Console(highlight=False, soft_wrap=True)
        if list_only:
            try:
                selected, _ = reg.select(only, skip)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
            if not by_clause:
                print_case_list(selected, console, as_json=as_json)
            if by_clause or not as_json:
                print_clause_list(selected, console, as_json=as_json)
            return
        if url is None:
            raise click.UsageError("missing URL (or use --list)")
        run_seed = secrets.randbelow(2**32) if seed is None else seed
        reporter = None
        ready = None
        if not as_json:
            reporter = TerminalReporter(console, strict=strict, report_dir=report_dir)
            try:
                n_cases = len(reg.select(only, skip)[0])
            except ValueError:
                n_cases = 0
            start = reporter.start

            def ready() -> None:  # the header only once the target can be tested
                start(url, run_seed, n_cases)
        try:
            result = asyncio.run(
                run_suite(
                    url,
                    registry=reg,
                    strict=strict,
                    only=only,
                    skip=skip,
                    seed=run_seed,
                    timeout_per_case=timeout,
                    progress=None if reporter is None else reporter.case_finished,
                    on_ready=ready,
                )
            )
        except SuiteCannotRun as exc:
            click.echo(f"vrm: the suite cannot run: {exc}", err=True)
            if as_json:  # still one document on stdout, for the CI job that reads it
                click.echo(json.dumps(cannot_run_data(
                    url, seed=run_seed, strict=strict, only=only, skip=skip, error=str(exc),
                    at=datetime.now(UTC)), indent=2, ensure_ascii=False))  # fmt: skip
            raise SystemExit(EXIT_CANNOT_RUN) from exc
        paths: ReportPaths | None = None
        if report_dir is not None:
            paths = write_reports(result, report_dir, transcripts=transcripts)
        if reporter is None:
            data = report_data(trimmed(result, transcripts), with_replay_files=paths is not None)
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            reporter.finish(result, paths)
        raise SystemExit(result.exit_code())

    return command


#: The command the ``vrm`` CLI mounts as ``vrm conformance``.
conformance = make_command()
