"""How much of what implementers get wrong does the conformance suite catch? (issue 18)

Runs the whole conformance suite against the reference vendor with one planted bug at a time
(the mutants of ``tests/_mutants.py``, each served in its own process) and prints, per mutant,
KILLED with the cases that caught it or SURVIVED, with the clause it breaks; then the killed
ratio by area and overall, and one JSON line last.

    python bench/mutation.py                       # every mutant
    python bench/mutation.py canon-long-str 'sig-*'  # some, by name or glob
    python bench/mutation.py --broken --repeat 5   # determinism: the 13 broken vendors, 5 runs each
    python bench/mutation.py --list                # the mutants, their areas and clauses

The reference vendor runs first as a control: if the suite does not pass it, nothing else
means anything and the script stops (exit 2). Exit 1 when a mutant survives (or, with
``--repeat``, when any vendor's failed cases differ between runs), else 0.

With ``--repeat N`` every selected vendor is run N times, each with another suite seed (so
another case order); a vendor whose set of failed cases is not the same every time is reported
as NON-DETERMINISTIC.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _mutants import AREAS, MUTANTS, Verdict, run_many, run_one


def _select(patterns: list[str], broken: bool) -> list[str]:
    if broken:
        from _broken_vendor import MISTAKES  # noqa: PLC0415

        return list(MISTAKES)
    if not patterns:
        return list(MUTANTS)
    names = [n for n in MUTANTS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in MUTANTS)]
    if unknown:
        raise SystemExit(f"no mutant matches {unknown}; see --list")
    return names


def _line(v: Verdict) -> str:
    m = MUTANTS[v.name]
    if v.problem:
        status = f"NOT RUN   {v.problem}"
    elif v.killed:
        shown = " ".join(v.killed_by[:8])
        more = f" (+{len(v.killed_by) - 8})" if len(v.killed_by) > 8 else ""
        status = f"KILLED    by {shown}{more}"
    else:
        status = "SURVIVED"
    if v.errors:
        status += f"  (harness errors: {' '.join(v.errors)})"
    return f"{v.name:45} {m.clause:10} {status}"


async def _main(args: argparse.Namespace) -> int:
    names = _select(args.names, args.broken)
    control = await run_one("reference", seed=args.seed)
    if control.killed or control.errors or control.problem:
        print(f"the reference vendor does not pass the suite: {control}", file=sys.stderr)
        return 2
    print(f"reference vendor: every case passes ({control.seconds:.1f} s)")
    started = time.perf_counter()
    runs: dict[str, list[Verdict]] = defaultdict(list)
    for i in range(args.repeat):
        seed = args.seed + i
        if args.repeat > 1:
            print(f"-- run {i + 1} of {args.repeat} (seed {seed})", flush=True)
        verdicts = await run_many(names, seed=seed, concurrency=args.jobs,
                                  done=lambda v: print(_line(v), flush=True))
        for v in verdicts:
            runs[v.name].append(v)
    elapsed = time.perf_counter() - started

    first = {n: runs[n][0] for n in names}
    unsteady = sorted(n for n in names if len({v.killed_by for v in runs[n]}) > 1)
    killed = [n for n in names if first[n].killed]
    survived = [n for n in names if not first[n].killed]
    print()
    by_area: dict[str, list[str]] = defaultdict(list)
    for n in names:
        by_area[MUTANTS[n].area].append(n)
    for area in AREAS:
        if by_area[area]:
            k = sum(first[n].killed for n in by_area[area])
            print(f"  {area:14} {k:3}/{len(by_area[area]):<3} killed")
    if survived:
        print("\nsurvivors:")
        for n in survived:
            print(f"  {n}  {MUTANTS[n].clause}  {MUTANTS[n].breaks}")
    if args.repeat > 1:
        print(f"\n{args.repeat} runs each: "
              + (f"NON-DETERMINISTIC {unsteady}" if unsteady else
                 "every vendor failed the same cases in every run"))
        for n in unsteady:
            for v in runs[n]:
                print(f"  {n}: {' '.join(v.killed_by) or '(nothing)'}")
    ratio = len(killed) / len(names) if names else 0.0
    print(f"\n{len(killed)}/{len(names)} mutants killed ({ratio:.1%}) in {elapsed:.0f} s")
    print(json.dumps({
        "mutants": len(names),
        "killed": len(killed),
        "ratio": round(ratio, 4),
        "survivors": survived,
        "not_run": [n for n in names if first[n].problem],
        "harness_errors": {n: list(first[n].errors) for n in names if first[n].errors},
        "repeat": args.repeat,
        "non_deterministic": unsteady,
        "seconds": round(elapsed, 1),
    }))
    return 1 if survived or unsteady else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutant names or globs (default: all)")
    parser.add_argument("--broken", action="store_true",
                        help="run the 13 broken vendors of tests/_broken_vendor.py")
    parser.add_argument("--repeat", type=int, default=1, help="runs per vendor (default 1)")
    parser.add_argument("--seed", type=int, default=20_260_101, help="first suite seed")
    parser.add_argument("--jobs", type=int, default=3, help="vendors served at once (default 3)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args()
    if args.list:
        for m in MUTANTS.values():
            print(f"{m.name:45} {m.area:13} {m.clause:10} {m.breaks}")
        print(f"{len(MUTANTS)} mutants")
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
