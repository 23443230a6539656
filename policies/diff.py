"""Differences between two versions of one Istio object: by field path, and as side-by-side YAML.

Both sides are normalized first (server-managed metadata and status dropped, keys sorted), so
the diff shows only what a person changed. `diff_objects(old, new)` takes `None` for a side
that does not exist (a creation or a deletion).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from itertools import zip_longest
from typing import Any, Literal

import yaml
from deepdiff import DeepDiff

from policies.normalize import normalize_object

# Unchanged runs longer than this are folded in the side-by-side view, keeping CONTEXT lines.
CONTEXT_LINES = 3
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# deepdiff report types → our three operations.
_OPERATIONS = {
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "attribute_added": "added",
    "set_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
    "attribute_removed": "removed",
    "set_item_removed": "removed",
    "values_changed": "changed",
    "type_changes": "changed",
}


class ChangeOp(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class RowTag(StrEnum):
    EQUAL = "equal"
    REPLACE = "replace"
    INSERT = "insert"
    DELETE = "delete"
    SKIP = "skip"  # a folded run of unchanged lines


@dataclass(frozen=True)
class Change:
    """One field that differs. `old` is None when added, `new` is None when removed."""

    path: str
    op: ChangeOp
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "op": str(self.op), "old": self.old, "new": self.new}


@dataclass(frozen=True)
class DiffRow:
    """One row of the side-by-side view. A line number is None where that side has no line."""

    left_no: int | None
    left: str
    right_no: int | None
    right: str
    tag: RowTag
    skipped: int = 0  # for SKIP rows: how many unchanged lines are folded

    @property
    def left_tag(self) -> str:
        return {RowTag.REPLACE: "delete", RowTag.DELETE: "delete"}.get(self.tag, "equal" if self.left_no else "empty")

    @property
    def right_tag(self) -> str:
        return {RowTag.REPLACE: "insert", RowTag.INSERT: "insert"}.get(self.tag, "equal" if self.right_no else "empty")


@dataclass(frozen=True)
class InlineRow:
    """One row of the unified (inline) view: '-' removed, '+' added, ' ' unchanged, '…' folded."""

    left_no: int | None
    right_no: int | None
    sign: str
    text: str
    tag: RowTag
    skipped: int = 0


@dataclass
class ObjectDiff:
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    changes: list[Change] = field(default_factory=list)
    old_yaml: str = ""
    new_yaml: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(change.op for change in self.changes)
        return {op.value: counts.get(op, 0) for op in ChangeOp}

    @cached_property
    def _opcodes(self) -> list[tuple[Literal["replace", "delete", "insert", "equal"], int, int, int, int]]:
        matcher = difflib.SequenceMatcher(None, self.old_lines, self.new_lines, autojunk=False)
        return matcher.get_opcodes()

    @cached_property
    def old_lines(self) -> list[str]:
        return self.old_yaml.splitlines()

    @cached_property
    def new_lines(self) -> list[str]:
        return self.new_yaml.splitlines()

    @cached_property
    def rows(self) -> list[DiffRow]:
        """Every line of both sides, aligned: the full side-by-side view."""
        rows: list[DiffRow] = []
        for tag, i1, i2, j1, j2 in self._opcodes:
            if tag == "equal":
                rows += [
                    DiffRow(i + 1, self.old_lines[i], j + 1, self.new_lines[j], RowTag.EQUAL)
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=False)
                ]
                continue
            for i, j in zip_longest(range(i1, i2), range(j1, j2)):
                if i is not None and j is not None:
                    rows.append(DiffRow(i + 1, self.old_lines[i], j + 1, self.new_lines[j], RowTag.REPLACE))
                elif i is not None:
                    rows.append(DiffRow(i + 1, self.old_lines[i], None, "", RowTag.DELETE))
                else:
                    rows.append(DiffRow(None, "", j + 1, self.new_lines[j], RowTag.INSERT))
        return rows

    @cached_property
    def side_by_side(self) -> list[DiffRow]:
        """`rows` with long unchanged runs folded into one SKIP row, keeping some context."""
        return _fold(self.rows, lambda row: row.tag == RowTag.EQUAL, _skip_row)

    @cached_property
    def inline(self) -> list[InlineRow]:
        """The unified view: removed lines then added lines for each change, unchanged runs folded."""
        lines: list[InlineRow] = []
        for tag, i1, i2, j1, j2 in self._opcodes:
            if tag == "equal":
                lines += [
                    InlineRow(i + 1, j + 1, " ", self.old_lines[i], RowTag.EQUAL)
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=False)
                ]
                continue
            lines += [InlineRow(i + 1, None, "-", self.old_lines[i], RowTag.DELETE) for i in range(i1, i2)]
            lines += [InlineRow(None, j + 1, "+", self.new_lines[j], RowTag.INSERT) for j in range(j1, j2)]
        return _fold(lines, lambda row: row.tag == RowTag.EQUAL, _skip_inline)

    def unified(self, *, old_label: str = "current", new_label: str = "draft", context: int = CONTEXT_LINES) -> str:
        """A `diff -u` text of the two YAML renderings."""
        return "".join(
            difflib.unified_diff(
                self.old_yaml.splitlines(keepends=True),
                self.new_yaml.splitlines(keepends=True),
                fromfile=old_label,
                tofile=new_label,
                n=context,
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "changes": [change.as_dict() for change in self.changes],
            "unified": self.unified(),
        }


def diff_objects(old: dict[str, Any] | None, new: dict[str, Any] | None) -> ObjectDiff:
    """Normalizes both sides and compares them field by field and line by line."""
    old_norm = normalize_object(old) if old is not None else None
    new_norm = normalize_object(new) if new is not None else None
    return ObjectDiff(
        old=old_norm,
        new=new_norm,
        changes=structural_changes(old_norm, new_norm),
        old_yaml=to_yaml(old_norm),
        new_yaml=to_yaml(new_norm),
    )


def to_yaml(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return ""
    return yaml.safe_dump(obj, sort_keys=True, allow_unicode=True, default_flow_style=False)


def structural_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Change]:
    """Fields added, removed or changed, with Kubernetes-style paths, in document order."""
    tree = DeepDiff(old or {}, new or {}, view="tree", threshold_to_diff_deeper=0)
    changes: list[tuple[tuple, Change]] = []
    for report_type, items in tree.items():
        op = _OPERATIONS.get(report_type)
        if op is None:  # e.g. repetition changes, which only ignore_order produces
            continue
        for item in items:
            parts = item.path(output_format="list")
            changes.append(
                (
                    _sort_key(parts),
                    Change(
                        path=format_path(parts),
                        op=ChangeOp(op),
                        old=None if op == "added" else _plain(item.t1),
                        new=None if op == "removed" else _plain(item.t2),
                    ),
                )
            )
    changes.sort(key=lambda pair: pair[0])
    return [change for _, change in changes]


def format_path(parts: list[str | int]) -> str:
    """['spec', 'http', 0, 'route', 1, 'weight'] → 'spec.http[0].route[1].weight'.

    Keys that are not plain identifiers (label keys such as `app.kubernetes.io/name`) are written
    in brackets, as Kubernetes writes map keys in field paths: `metadata.labels[app.kubernetes.io/name]`.
    """
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{part}]"
    return path


def _sort_key(parts: list[str | int]) -> tuple:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts)


def _plain(value: Any) -> Any:
    """deepdiff's 'not present' marker and other non-JSON values → None / plain values."""
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return None


def _skip_row(run: list[DiffRow]) -> DiffRow:
    return DiffRow(run[0].left_no, "", run[0].right_no, "", RowTag.SKIP, skipped=len(run))


def _skip_inline(run: list[InlineRow]) -> InlineRow:
    return InlineRow(run[0].left_no, run[0].right_no, "…", "", RowTag.SKIP, skipped=len(run))


def _fold(
    rows: list, is_equal: Callable[[Any], bool], make_skip: Callable[..., Any], context: int = CONTEXT_LINES
) -> list:
    """Replaces each unchanged run longer than 2*context (+2) by context lines, a skip row, context lines.
    Runs at the start or the end keep context lines on their inner side only."""
    if not any(not is_equal(row) for row in rows):
        return rows
    folded: list = []
    index = 0
    while index < len(rows):
        if not is_equal(rows[index]):
            folded.append(rows[index])
            index += 1
            continue
        end = index
        while end < len(rows) and is_equal(rows[end]):
            end += 1
        run = rows[index:end]
        keep_before = 0 if index == 0 else context
        keep_after = 0 if end == len(rows) else context
        if len(run) > keep_before + keep_after + 1:
            hidden = run[keep_before : len(run) - keep_after]
            folded += run[:keep_before] + [make_skip(hidden)] + run[len(run) - keep_after :]
        else:
            folded += run
        index = end
    return folded
