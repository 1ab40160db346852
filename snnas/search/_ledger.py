"""What a fixed-mode comparison keeps in its folder so that it resumes: ``compare.json`` (the
settings), ``reference.jsonl`` (the reference sample's scores) and ``evaluations.jsonl``
(every finished (reward mode, strategy, seed) search).

Both JSON-lines files are appended to and flushed to disk after each chunk, so a crash can
only cut the last line short: a resumed comparison drops that torn line (and any search
whose records it cut) and rewrites the file atomically. Any other damage is refused with the
file and the line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from snnas._io import atomic_write_text
from snnas._run import RunDir
from snnas.errors import CheckpointError
from snnas.search._config import with_defaults

__all__ = ["EVALUATION_KEYS", "REFERENCE_KEYS", "Ledger", "read_records"]

_NUMBER = (int, float)
#: The type of each key a record must have.
EVALUATION_KEYS: dict[str, Any] = {
    "reward_mode": str,
    "strategy": str,
    "seed": int,
    "policy": dict,
    "accuracy": _NUMBER,
    "comm_ratio": _NUMBER,
}
REFERENCE_KEYS: dict[str, Any] = {"policy": dict, "accuracy": _NUMBER, "comm_ratio": _NUMBER}


def _wrong_type(value: Any, kind: Any) -> bool:
    if isinstance(value, bool):
        return True  # never a seed, a number or a name
    if kind is _NUMBER and isinstance(value, float) and not math.isfinite(value):
        return True
    return not isinstance(value, kind)


def _evaluation_problems(record: dict[str, Any]) -> list[str]:
    """What the comparison reads back from an evaluation beyond its fixed keys: a finite
    ``reward`` (null in ``pareto`` mode, whose strategies are told the objectives), and, when
    present, ``degraded_accuracy`` in [0, 1]."""
    problems = []
    reward = record.get("reward", "missing")
    if record.get("reward_mode") == "pareto":
        if reward is not None and _wrong_type(reward, _NUMBER):
            problems.append("reward")
    elif reward is None or _wrong_type(reward, _NUMBER):
        problems.append("reward")
    if "degraded_accuracy" in record:
        value = record["degraded_accuracy"]
        if _wrong_type(value, _NUMBER) or not 0 <= value <= 1:
            problems.append("degraded_accuracy")
    return problems


def read_records(path: Path, keys: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The records of a JSON-lines file, and whether the file must be rewritten before more
    is appended: its last line was torn (cut short by a crash: no final newline and not
    valid JSON, so it is dropped) or lacks its newline. [] when there is no file."""
    if not path.exists():
        return [], False
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rewrite = False
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last complete record
    else:
        rewrite = True
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"{path}:{number}: not a JSON record ({exc.msg}); the file is damaged, not "
                "cut short by a crash: move it away to start the comparison again"
            ) from None
        if not isinstance(record, dict) or any(k not in record for k in keys):
            missing = [k for k in keys if not isinstance(record, dict) or k not in record]
            raise CheckpointError(f"{path}:{number}: a record without {', '.join(missing)}")
        wrong = [k for k, kind in keys.items() if _wrong_type(record[k], kind)]
        if keys is EVALUATION_KEYS:
            wrong += _evaluation_problems(record)
        if wrong:
            raise CheckpointError(
                f"{path}:{number}: a record whose {', '.join(wrong)} has the wrong type or is "
                "not finite"
            )
        records.append(record)
    return records, rewrite


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


class Ledger:
    """The comparison's records in ``run``; refuses a folder made with other settings."""

    def __init__(self, run: RunDir, identity: dict[str, Any]) -> None:
        self.run = run
        saved = run.read_json("compare.json") if (run / "compare.json").exists() else None
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            saved = {**saved, "config": with_defaults(saved["config"])}  # older versions
        if saved is not None and saved != identity:
            raise CheckpointError(
                f"{run.path} holds a comparison with other settings (space, budget, reference "
                "size or configuration); use another --name"
            )
        run.write_json("compare.json", identity)

    def reference(self) -> list[dict[str, Any]]:
        """The reference sample scored so far."""
        path = self.run / "reference.jsonl"
        rows, torn = read_records(path, REFERENCE_KEYS)
        if torn:
            _rewrite(path, rows)
        return rows

    def add_reference(self, rows: list[dict[str, Any]]) -> None:
        """Append scored reference policies."""
        _append(self.run / "reference.jsonl", rows)

    def evaluations(self, budget: int) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
        """Finished searches by (reward mode, strategy, seed); a search cut short by a crash
        is dropped from the file, to be run again."""
        path = self.run / "evaluations.jsonl"
        records, torn = read_records(path, EVALUATION_KEYS)
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for e in records:
            runs.setdefault((e["reward_mode"], e["strategy"], e["seed"]), []).append(e)
        complete = {k: v for k, v in runs.items() if len(v) == budget}
        if torn or len(complete) != len(runs):
            _rewrite(path, [e for v in complete.values() for e in v])
        return complete

    def add_evaluations(self, records: list[dict[str, Any]]) -> None:
        """Append one finished search."""
        _append(self.run / "evaluations.jsonl", records)
