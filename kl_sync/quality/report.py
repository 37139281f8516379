"""What one validated batch came to: a verdict per row, and failures per expectation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The failure given to a row whose payload cannot be turned into a row of the frame at all.
UNFLATTENABLE = "payload is not flattenable"


@dataclass(frozen=True)
class QualityReport:
    """What one validated batch came to: every row key is either in ``passed_keys`` or ``failures``."""

    kind: str
    rows: int
    #: Row key -> the expectations it broke, in suite order (or the one ``UNFLATTENABLE`` reason).
    failures: dict[str, list[str]]
    passed_keys: list[str]
    #: Every expectation of the suite -> rows that broke it (0 included); plus ``UNFLATTENABLE`` if any.
    by_expectation: dict[str, int]
    #: The GX validation results behind this report, for :func:`build_data_docs`.
    validations: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def failed_keys(self) -> list[str]:
        return list(self.failures)

    @property
    def success(self) -> bool:
        return not self.failures

    def reason(self, key: str) -> str:
        """The failures of one row as one line, for a dead letter."""
        return "; ".join(self.failures[key])

    def summary_rows(self, examples: int = 3) -> list[dict[str, Any]]:
        """One row per check, for a table artifact: kind, check, failed rows, a few failing keys."""
        keys_by_check: dict[str, list[str]] = {}
        for key, names in self.failures.items():
            for name in names:
                check = UNFLATTENABLE if name.startswith(UNFLATTENABLE) else name
                found = keys_by_check.setdefault(check, [])
                if len(found) < examples:
                    found.append(key)
        return [
            {
                "kind": self.kind,
                "check": check,
                "failed_rows": count,
                "example_keys": ", ".join(keys_by_check.get(check, [])),
            }
            for check, count in self.by_expectation.items()
        ]
