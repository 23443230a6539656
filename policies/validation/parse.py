"""Layer 1: bytes → objects. UTF-8 YAML or JSON, multi-document, `kind: List` and JSON lists.

Safe by construction: files are size-checked before they are decoded, YAML is composed with the
LibYAML safe loader (which caps nesting at 1000), and the object is built by `_Builder` from the
node graph, counting every value so that alias bombs stop at `MAX_NODES_PER_DOCUMENT`. The same walk
records the line and column of every field path, which later layers use to place their findings.
Plain scalars are read as Kubernetes reads them (sigs.k8s.io/yaml; see
`integrations.kubernetes.yamlscalars`), not by PyYAML's YAML 1.1 rules: `1:20`, `001:db8::` and
`2024-01-01` stay strings, `0o17` is 15, `yes` is true.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from integrations.kubernetes.yamlscalars import (
    FLOW_COLON_PROBLEM,
    PLAIN_TAG,
    GoFlowScannerMixin,
    KubernetesResolver,
    is_json_number,
    key_text,
    resolve_plain,
)
from policies.validation import limits
from policies.validation.codes import finding
from policies.validation.findings import Finding
from policies.validation.identity import check_identities

Position = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE, _MAP, _SEQ = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp", "merge", "map", "seq")
)
_LAST_SEGMENT = re.compile(r"(\.[^.\[]*|\[\d+\])$")
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D} | {0x7F}
_SCALARS = SafeConstructor()
_RESOLVABLE_KEY_START = frozenset("yYnNtTfFoO~.+-0123456789")
"""First characters of plain keys that may read as something else than their text (`yes`, `1`, ...)."""


class _Loader(KubernetesResolver, yaml.CSafeLoader):
    """LibYAML's safe composer; plain scalars are resolved later as Kubernetes resolves them."""


class _FlowLoader(KubernetesResolver, GoFlowScannerMixin, yaml.SafeLoader):
    """The pure-Python composer with go-yaml's flow plain scalars (see `_compose`)."""


@dataclass
class ParsedDocument:
    """One object of a bundle, with where each of its fields is in the file."""

    file: str
    index: int
    obj: dict[str, Any]
    start_line: int
    end_line: int = 0
    item: int | None = None
    """Position in a `kind: List` or JSON list; None for a document that is the object itself."""
    positions: dict[str, Position] = field(default_factory=dict, repr=False)
    checkable: bool = True
    """False when its identity is unusable (unsupported kind, no name, ...): later layers skip it."""
    namespace_defaulted: bool = False
    """True when metadata.namespace was not written and the bundle's default namespace was set."""

    @property
    def kind(self) -> str:
        return _text(self.obj.get("kind"))

    @property
    def metadata(self) -> dict[str, Any]:
        metadata = self.obj.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    @property
    def name(self) -> str:
        return _text(self.metadata.get("name"))

    @property
    def namespace(self) -> str:
        return _text(self.metadata.get("namespace"))

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.kind, self.namespace, self.name

    @property
    def label(self) -> str:
        """E.g. "VirtualService bookinfo/reviews"; "" while the identity is unknown."""
        if not (self.kind and self.name):
            return ""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def position_of(self, path: str) -> Position | None:
        """Line and column of a field path, or of its nearest ancestor present in the file."""
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return None
            path = _LAST_SEGMENT.sub("", path) if _LAST_SEGMENT.search(path) else ""

    def line_of(self, path: str) -> int | None:
        position = self.position_of(path)
        return position[0] if position else None

    def at(self, path: str = "") -> dict[str, Any]:
        """The location keywords of a Finding about `path` in this document."""
        position = self.position_of(path)
        return {
            "file": self.file,
            "document": self.index,
            "line": position[0] if position else self.start_line,
            "column": position[1] if position else None,
            "path": path,
            "object": self.label,
        }

    def covers(self, item: Finding) -> bool:
        if item.file != self.file or item.document != self.index:
            return False
        return self.item is None or item.line is None or self.start_line <= item.line <= self.end_line


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_bundle(
    files: list[tuple[str, bytes]], *, default_namespace: str = ""
) -> tuple[list[ParsedDocument], list[Finding]]:
    """Every object of every file, and the parse and identity findings."""
    total = sum(len(content) for _, content in files)
    if total > limits.MAX_BUNDLE_BYTES:
        return [], [_too_large(files, total)]
    documents: list[ParsedDocument] = []
    findings: list[Finding] = []
    for name, content in files:
        parsed, problems = parse_file(name, content)
        documents.extend(parsed)
        findings.extend(problems)
    if len(documents) > limits.MAX_DOCUMENTS:
        return [], [*findings, _too_many_documents("")]
    if not documents and not findings:
        findings.append(finding("MG0012", "the bundle holds no object: add at least one Istio object"))
    findings.extend(check_identities(documents, default_namespace=default_namespace))
    return documents, findings


def _too_large(files: list[tuple[str, bytes]], total: int) -> Finding:
    limit = _mib(limits.MAX_BUNDLE_BYTES)
    if len(files) == 1:
        message = f"the file is {_mib(total)}, more than the {limit} Meshgate accepts: split it into smaller files"
        return finding("MG0001", message, file=files[0][0])
    message = f"the bundle is {_mib(total)}, more than the {limit} Meshgate accepts: split it into smaller bundles"
    return finding("MG0001", message)


def _too_many_documents(name: str) -> Finding:
    what = "file" if name else "bundle"
    message = (
        f"the {what} holds more than the {limits.MAX_DOCUMENTS} documents Meshgate validates at once: "
        f"split it into several {what}s"
    )
    return finding("MG0013", message, file=name)


def _mib(size: int) -> str:
    return f"{size / limits.MIB:.1f} MiB"


def parse_file(name: str, content: bytes) -> tuple[list[ParsedDocument], list[Finding]]:
    text, problem = decode(name, content)
    if problem is not None:
        return [], [problem]
    documents, findings = _read_file(name, text, _Loader)
    if findings and FLOW_COLON_PROBLEM in findings[-1].message and findings[-1].code == "MG0004":
        # LibYAML refuses a `:` inside a flow plain scalar (`[001:db8::]`) that kubectl reads as a
        # string: read the file again with the pure-Python loader and go-yaml's rule.
        documents, findings = _read_file(name, text, _FlowLoader)
    return documents, findings


def _read_file(name: str, text: str, loader_class: type) -> tuple[list[ParsedDocument], list[Finding]]:
    documents: list[ParsedDocument] = []
    findings: list[Finding] = []
    for index, node, error in _compose(name, text, loader_class):
        if error is not None:
            findings.append(error)
            break
        if index >= limits.MAX_DOCUMENTS:
            findings.append(_too_many_documents(name))
            break
        assert node is not None  # _compose yields a node with every index it yields no error for
        parsed, problems = _read_document(name, index, node)
        documents.extend(parsed)
        findings.extend(problems)
    return documents, findings


# --- bytes → text ---------------------------------------------------------------------------------


def decode(name: str, content: bytes) -> tuple[str, Finding | None]:
    """UTF-8 text (a BOM dropped), or a finding saying why the bytes are not acceptable."""
    if content.startswith(_WIDE_BOMS):
        message = "the file is UTF-16 or UTF-32 encoded: save it as UTF-8"
        return "", finding("MG0003", message, file=name, line=1, column=1)
    head = content[: limits.BINARY_SNIFF_BYTES]
    controls = sum(1 for byte in head if byte in _CONTROL_BYTES)
    if b"\x00" in head or (head and controls / len(head) > limits.BINARY_CONTROL_RATIO):
        message = "the file holds binary data, not YAML or JSON text: upload the manifest text itself"
        return "", finding("MG0002", message, file=name)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", _not_utf8(name, content, exc.start)
    return text.removeprefix("\ufeff"), None


def _not_utf8(name: str, content: bytes, offset: int) -> Finding:
    line = content.count(b"\n", 0, offset) + 1
    column = offset - (content.rfind(b"\n", 0, offset) + 1) + 1
    message = (
        f"byte 0x{content[offset]:02x} at byte offset {offset} (line {line}) is not valid UTF-8: save the file as UTF-8"
    )
    return finding("MG0003", message, file=name, line=line, column=column)


# --- text → YAML nodes ----------------------------------------------------------------------------


def _compose(name: str, text: str, loader_class: type) -> Iterator[tuple[int, Node | None, Finding | None]]:
    """(index, root node, None) per document; (index, None, finding) on the first syntax error."""
    loader = loader_class(text)
    index = 0
    try:
        while loader.check_node():
            yield index, loader.get_node(), None
            index += 1
    except yaml.MarkedYAMLError as exc:
        yield index, None, _syntax_error(name, text, index, exc)
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        message = f"character {exc.character!r} is not allowed in YAML (line {line}, column {column}): remove it"
        yield index, None, finding("MG0004", message, file=name, document=index, line=line, column=column)
    except yaml.YAMLError as exc:
        yield index, None, finding("MG0004", f"the text cannot be parsed: {exc}", file=name, document=index)
    finally:
        loader.dispose()


def _line_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _syntax_error(name: str, text: str, index: int, exc: yaml.MarkedYAMLError) -> Finding:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    where = {"file": name, "document": index, "line": line, "column": column}
    if line is not None:
        source_line = text.split("\n", line)[line - 1] if line <= text.count("\n") + 1 else ""
        indentation = source_line[: len(source_line) - len(source_line.lstrip(" \t"))]
        if "\t" in indentation:
            where["column"] = indentation.index("\t") + 1
            return finding("MG0005", f"line {line} is indented with a tab: indent with spaces only", **where)
    location = f" at line {line}, column {column}" if line is not None else ""
    context = ""
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        context = f" ({exc.context} from line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    elif exc.context:
        context = f" ({exc.context})"
    message = (
        f"YAML/JSON syntax error{location}: {exc.problem}{context}; check the indentation, quotes and brackets there"
    )
    return finding("MG0004", message, **where)


# --- nodes → objects ------------------------------------------------------------------------------


class _Abort(Exception):
    def __init__(self, problem: Finding):
        super().__init__(problem.message)
        self.problem = problem


def _read_document(name: str, index: int, root: Node) -> tuple[list[ParsedDocument], list[Finding]]:
    where = {"file": name, "document": index, "line": root.start_mark.line + 1}
    if root.end_mark.index - root.start_mark.index > limits.MAX_DOCUMENT_BYTES:
        message = (
            f"the document is larger than {_mib(limits.MAX_DOCUMENT_BYTES)}, the most Meshgate accepts "
            "for one object: split it"
        )
        return [], [finding("MG0010", message, **where)]
    if (
        isinstance(root, ScalarNode)
        and root.tag in (_NULL, PLAIN_TAG)
        and root.value in ("", "~", "null", "Null", "NULL")
    ):
        return [], []  # an empty document, e.g. between two `---`
    builder = _Builder(name, index)
    items = _list_items(root)
    documents: list[ParsedDocument] = []
    try:
        for item, node in items:
            value, positions = builder.build(node)
            if not isinstance(value, dict):
                where["line"] = node.start_mark.line + 1
                what = "a list item" if item is not None else "the document"
                message = f"{what} is a {_kind_of(value)}, not a Kubernetes object: remove it or make it an object"
                builder.findings.append(finding("MG0009", message, **where))
                continue
            documents.append(
                ParsedDocument(
                    file=name,
                    index=index,
                    obj=value,
                    start_line=node.start_mark.line + 1,
                    end_line=node.end_mark.line + 1,
                    item=item,
                    positions=positions,
                )
            )
    except _Abort as abort:
        return [], [*builder.findings, abort.problem]
    return documents, builder.findings


def _list_items(root: Node) -> list[tuple[int | None, Node]]:
    """The objects a document holds: itself, the items of `kind: List`, or the values of a list."""
    if isinstance(root, SequenceNode):
        return list(enumerate(root.value))
    if isinstance(root, MappingNode):
        entries = {key.value: value for key, value in root.value if isinstance(key, ScalarNode)}
        kind, items = entries.get("kind"), entries.get("items")
        if isinstance(kind, ScalarNode) and kind.value == "List" and isinstance(items, SequenceNode):
            return list(enumerate(items.value))
    return [(None, root)]


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null value"
    return f"{type(value).__name__} value"


class _Builder:
    """Builds plain JSON-like values from nodes, with a position per path and a budget of values."""

    def __init__(self, file: str, index: int):
        self.file = file
        self.index = index
        self.findings: list[Finding] = []
        self.count = 0
        self.aliased = False
        self._active: set[int] = set()
        self._seen: set[int] = set()
        self.positions: dict[str, Position] = {}

    def build(self, node: Node) -> tuple[Any, dict[str, Position]]:
        self.positions = {}
        value = self._value(node, "", node.start_mark, 0)
        return value, self.positions

    def _where(self, mark: Any, path: str = "") -> dict[str, Any]:
        return {
            "file": self.file,
            "document": self.index,
            "line": mark.line + 1,
            "column": mark.column + 1,
            "path": path,
        }

    def _value(self, node: Node, path: str, mark: Any, depth: int) -> Any:
        self.count += 1
        if self.count > limits.MAX_NODES_PER_DOCUMENT:
            raise _Abort(self._too_many(node, path))
        self.positions[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if depth >= limits.MAX_DEPTH:
            message = f"the document is nested more than {limits.MAX_DEPTH} levels deep: check the indentation"
            raise _Abort(finding("MG0008", message, **self._where(node.start_mark, path)))
        key = id(node)
        if key in self._active:
            message = "an alias refers to the value that contains it (a recursive structure): write the values out"
            raise _Abort(finding("MG0007", message, **self._where(node.start_mark, path)))
        if key in self._seen:
            self.aliased = True
        self._seen.add(key)
        self._active.add(key)
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path, depth)
            return [
                self._value(item, f"{path}[{position}]", item.start_mark, depth + 1)
                for position, item in enumerate(node.value)
            ]
        finally:
            self._active.discard(key)

    def _too_many(self, node: Node, path: str) -> Finding:
        cause = "through YAML aliases" if self.aliased else "in all"
        message = (
            f"the document expands {cause} to more than {limits.MAX_NODES_PER_DOCUMENT:,} values and was "
            "refused (a 'billion laughs' structure?): write the values out instead of using anchors"
        )
        return finding("MG0007", message, **self._where(node.start_mark, path))

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        tag = node.tag
        if tag == PLAIN_TAG:
            try:
                value = resolve_plain(node.value)
            except ValueError:  # an integer past Python's 4,300-digit conversion limit
                return self._number(node, path, lambda: int(node.value))
            if not is_json_number(value):
                self._unsupported(node, path, f"the number {node.value}")
                return node.value
            return value
        if tag == _STR:
            return node.value
        if tag in (_NULL,):
            return None
        if tag == _BOOL:
            return _SCALARS.construct_yaml_bool(node)
        if tag == _INT:
            return self._number(node, path, lambda: _SCALARS.construct_yaml_int(node))
        if tag == _FLOAT:
            return self._number(node, path, lambda: self._finite(node, path, _SCALARS.construct_yaml_float(node)))
        if tag == _TIMESTAMP:
            return node.value
        self._unsupported(node, path, f"the YAML tag {tag.replace(_TAG, '!!')}")
        return node.value

    def _number(self, node: ScalarNode, path: str, build: Any) -> Any:
        """A number as JSON can carry it: integers of at most 4,300 digits (Python's conversion limit),
        finite floats; anything else is a finding at its line, never an error later on."""
        try:
            number = build()
        except ValueError:
            digits = sum(ch.isdigit() for ch in node.value)
            self.findings.append(
                finding(
                    "MG0011",
                    f"a number of {digits:,} digits cannot be read: write it as a quoted string, or a smaller number",
                    **self._where(node.start_mark, path),
                )
            )
            return None
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number

    def _finite(self, node: ScalarNode, path: str, number: float) -> float | None:
        if math.isfinite(number):
            return number
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "…"
        self.findings.append(
            finding(
                "MG0011",
                f"{shown} is not a finite number (JSON and Kubernetes have no "
                "infinity or NaN): write a finite number, or quote it as a string",
                **self._where(node.start_mark, path),
            )
        )
        return None

    def _unsupported(self, node: Node, path: str, what: str) -> None:
        message = f"{what} has no JSON equivalent: use a plain string, number, boolean, list or mapping"
        self.findings.append(finding("MG0011", message, **self._where(node.start_mark, path)))

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._unsupported(key_node, path, "a list or mapping used as a key")
                continue
            key = key_node.value
            if key_node.tag == PLAIN_TAG and key[:1] in _RESOLVABLE_KEY_START:
                key = key_text(resolve_plain(key))
            child = f"{path}.{key}" if path else key
            if key in first_seen:
                self._duplicate(key, path, key_node, first_seen[key])
            first_seen[key] = key_node.start_mark
            result[key] = self._value(value_node, child, key_node.start_mark, depth + 1)
        for merged in merges:
            self._merge(result, merged, path, depth)
        return result

    def _duplicate(self, key: str, path: str, key_node: Node, first: Any) -> None:
        parent = f" in {path}" if path else ""
        message = f"key '{key}' appears twice{parent} (first at line {first.line + 1}): keep only one of them"
        child = f"{path}.{key}" if path else key
        self.findings.append(finding("MG0006", message, **self._where(key_node.start_mark, child)))

    def _merge(self, result: dict[str, Any], merged: Node, path: str, depth: int) -> None:
        """`<<: *anchor` (or a list of them): keys not set explicitly come from the merged mappings."""
        sources = merged.value if isinstance(merged, SequenceNode) else [merged]
        for source in sources:
            if not isinstance(source, MappingNode):
                self._unsupported(source, path, "a merge key (<<) whose value is not a mapping")
                continue
            value = self._value(source, f"{path}.<<" if path else "<<", source.start_mark, depth + 1)
            for key, item in value.items():
                result.setdefault(key, item)
