"""`make mutation`'s score: each module's mutants as mutmut left them in `mutants/`, less the
equivalent ones listed in tests/mutation_equivalents.txt (each with its reason).

A mutant counts as killed when its tests failed or timed out (a hang is a failure too); one
that survived, or that no test reached, counts against the score. Exits 1 when the share of
non-equivalent mutants killed is under the target, or when the list names a mutant that no
longer exists (the code moved on: re-examine the list).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.85
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.txt"
#: mutmut's exit codes (mutmut.stats): the tests failed, or ran out of time.
KILLED = {1, 3, 24, -24, 36, 152, 255}


def equivalents() -> dict[str, str]:
    """`name  reason` per line; blank lines and `#` comments skipped."""
    found = {}
    for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            if not reason.strip():
                raise SystemExit(f"{EQUIVALENTS.name}: {name} has no reason")
            found[name] = reason.strip()
    return found


def results(mutants: Path) -> dict[str, dict[str, int | None]]:
    """Each mutated module's mutants and their exit codes (None: not run yet)."""
    by_module = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = ".".join(meta.relative_to(mutants).with_suffix("").with_suffix("").parts)
        by_module[module] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return by_module


def main() -> int:
    listed = equivalents()
    by_module = results(ROOT / "mutants")
    if not by_module:
        print("no mutmut results under mutants/: run `make mutation`", file=sys.stderr)
        return 1
    seen: set[str] = set()
    total = Counter[str]()
    for module, codes in by_module.items():
        counts = Counter[str]()
        for name, code in codes.items():
            if name in listed:
                seen.add(name)
                counts["equivalent"] += 1
            elif code in KILLED:
                counts["killed"] += 1
            else:
                counts["not run" if code is None else "survived"] += 1
                print(f"  survived: {name} (exit code {code})")
        total.update(counts)
        print(f"{module}: {_line(counts)}")
    print(f"all: {_line(total)}")
    stale = sorted(set(listed) - seen)
    for name in stale:
        print(f"listed as equivalent but not found: {name}", file=sys.stderr)
    return 0 if _score(total) >= TARGET and not stale else 1


def _score(counts: Counter[str]) -> float:
    judged = counts["killed"] + counts["survived"] + counts["not run"]
    return counts["killed"] / judged if judged else 1.0


def _line(counts: Counter[str]) -> str:
    return (
        f"{_score(counts):.1%} of non-equivalent mutants killed "
        f"({counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['not run']} not run, {counts['equivalent']} equivalent)"
    )


if __name__ == "__main__":
    sys.exit(main())
