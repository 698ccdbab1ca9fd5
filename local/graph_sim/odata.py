"""The OData subset Graph uses here: $filter expressions, $select projection, $top and opaque skip tokens."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.graph_sim.clock import parse_dt
from local.graph_sim.contract_queries import PropertyRow
from local.graph_sim.errors import GraphError, bad_request, unsupported_query

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)"
    r"|(?P<num>[0-9][0-9A-Za-z:.+\-]*)|(?P<word>[A-Za-z_$][A-Za-z0-9_/.]*))"
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"startswith", "endswith"}
_MISSING = object()


def resolve_path(obj: Any, path: str) -> Any:
    """Walk "a/b/c" through nested dicts; property names compare case-insensitively, as Graph does."""
    current = obj
    for part in path.split("/"):
        if not isinstance(current, dict):
            return None
        if part in current:
            current = current[part]
            continue
        lowered = part.lower()
        current = next((v for k, v in current.items() if k.lower() == lowered), None)
    return current


@dataclass
class Literal:
    value: Any
    is_datetime: bool = False


@dataclass
class Comparison:
    path: str
    op: str
    literal: Literal

    def __call__(self, obj: Any) -> bool:
        actual = resolve_path(obj, self.path)
        expected = self.literal.value
        if expected is None or actual is None:
            if self.op == "eq":
                return actual is None and expected is None
            if self.op == "ne":
                return not (actual is None and expected is None)
            return False
        if self.literal.is_datetime and isinstance(actual, str):
            try:
                actual = parse_dt(actual)
            except ValueError:
                return False
        if isinstance(actual, str) and isinstance(expected, str):
            actual, expected = actual.lower(), expected.lower()
        try:
            return bool(_OPS[self.op](actual, expected))
        except TypeError:
            return False


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


@dataclass
class FunctionCall:
    name: str
    path: str
    argument: str

    def __call__(self, obj: Any) -> bool:
        actual = resolve_path(obj, self.path)
        if not isinstance(actual, str):
            return False
        if self.name == "startswith":
            return actual.lower().startswith(self.argument.lower())
        return actual.lower().endswith(self.argument.lower())


@dataclass
class InList:
    path: str
    values: list[Any]

    def __call__(self, obj: Any) -> bool:
        actual = resolve_path(obj, self.path)
        if isinstance(actual, str):
            return actual.lower() in {v.lower() for v in self.values if isinstance(v, str)}
        return actual in self.values


@dataclass
class BoolOp:
    op: str  # "and" | "or" | "not"
    operands: list[Any]

    def __call__(self, obj: Any) -> bool:
        if self.op == "not":
            return not self.operands[0](obj)
        if self.op == "and":
            return all(operand(obj) for operand in self.operands)
        return any(operand(obj) for operand in self.operands)


@dataclass
class Filter:
    """A parsed $filter: callable on a stored object, and able to say what it touches."""

    text: str
    root: Any
    paths: list[str] = field(default_factory=list)
    clauses: int = 0

    def __call__(self, obj: Any) -> bool:
        return bool(self.root(obj))

    def leaves(self) -> Iterator[tuple[str, str, bool]]:
        """(property path, operator, negated) of every clause: the operator is `eq`, `ne`, `ge`, ..., `in`,
        `startswith`, `endswith`, or `null` for `eq null`/`ne null`; negated when under a `not`."""

        def walk(node: Any, negated: bool) -> Iterator[tuple[str, str, bool]]:
            if isinstance(node, BoolOp):
                for operand in node.operands:
                    yield from walk(operand, negated or node.op == "not")
            elif isinstance(node, Comparison):
                null = node.literal.value is None and node.op in ("eq", "ne")
                yield node.path, "null" if null else node.op, negated or (null and node.op == "ne")
            elif isinstance(node, FunctionCall):
                yield node.path, node.name, negated
            elif isinstance(node, InList):
                yield node.path, "in", negated

        return walk(self.root, False)


def check_filter(flt: Filter | None, rows: Mapping[str, PropertyRow], *, resource: str, advanced: bool) -> None:
    """Refuse, as Graph does, a filter that the contract rows do not list (local/graph_sim/contract_queries.py):
    an unknown property or operator is 400 Request_UnsupportedQuery; an operator that needs advanced query
    parameters without them, too; a property that must stand alone (signInActivity) combined with others."""
    if flt is None:
        return
    for path, operator, negated in flt.leaves():
        row = rows.get(path.lower())
        if row is None:
            raise unsupported_query(
                f"Unsupported or invalid query filter clause specified for property '{path}' of resource '{resource}'."
            )
        if row.alone and flt.clauses > 1:
            raise unsupported_query(
                f"Unsupported or invalid query filter clause specified for property '{path}' of resource "
                f"'{resource}'. Filtering on it cannot be combined with other filter clauses."
            )
        for needed in (operator, "not") if negated else (operator,):
            support = row.support(needed)
            if support is None:
                shown = "eq null" if needed == "null" else needed
                raise unsupported_query(
                    f"Unsupported or invalid query filter clause specified for property '{path}' of resource "
                    f"'{resource}': operator '{shown}' is not supported."
                )
            if support == "advanced" and not advanced:
                raise unsupported_query(
                    f"Operator '{needed}' is not supported because the required parameters might be missing. "
                    "Try adding $count=true query parameter and ConsistencyLevel:eventual header."
                )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.paths: list[str] = []
        self.clauses = 0

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        index = 0
        while index < len(text):
            if text[index:].strip() == "":
                break
            match = _TOKEN_RE.match(text, index)
            if not match or match.end() == index:
                raise self._error()
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            index = match.end()
        return tokens

    def _error(self) -> GraphError:
        return bad_request(f"Invalid filter clause: syntax error in '{self.text}'.")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (kind is not None and token[0] != kind):
            raise self._error()
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token and token[0] == "word" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Filter:
        root = self._or()
        if self._peek() is not None:
            raise self._error()
        return Filter(self.text, root, self.paths, self.clauses)

    def _or(self) -> Any:
        operands = [self._and()]
        while self._keyword("or"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else BoolOp("or", operands)

    def _and(self) -> Any:
        operands = [self._unary()]
        while self._keyword("and"):
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else BoolOp("and", operands)

    def _unary(self) -> Any:
        if self._keyword("not"):
            return BoolOp("not", [self._unary()])
        token = self._peek()
        if token and token[0] == "lp":
            self._take("lp")
            inner = self._or()
            self._take("rp")
            return inner
        name = self._take("word")[1]
        following = self._peek()
        if name.lower() in _FUNCTIONS and following and following[0] == "lp":
            self._take("lp")
            path = self._take("word")[1]
            self._take("comma")
            argument = self._literal()
            self._take("rp")
            if not isinstance(argument.value, str):
                raise self._error()
            self.paths.append(path)
            self.clauses += 1
            return FunctionCall(name.lower(), path, argument.value)
        op = self._take("word")[1].lower()
        if op == "in":
            self._take("lp")
            values = [self._literal().value]
            while self._peek() and self._peek() == ("comma", ","):
                self._take("comma")
                values.append(self._literal().value)
            self._take("rp")
            self.paths.append(name)
            self.clauses += 1
            return InList(name, values)
        if op not in _COMPARISONS:
            raise self._error()
        literal = self._literal()
        self.paths.append(name)
        self.clauses += 1
        return Comparison(name, op, literal)

    def _literal(self) -> Literal:
        kind, raw = self._take()
        if kind == "str":
            return Literal(raw[1:-1].replace("''", "'"))
        if kind == "word":
            lowered = raw.lower()
            if lowered in ("true", "false"):
                return Literal(lowered == "true")
            if lowered == "null":
                return Literal(None)
            raise self._error()
        if kind == "num":
            if re.fullmatch(r"-?\d+", raw):
                return Literal(int(raw))
            if re.fullmatch(r"-?\d+\.\d+", raw):
                return Literal(float(raw))
            if re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", raw):
                return Literal(raw)
            try:
                moment: datetime = parse_dt(raw)
            except ValueError:
                raise self._error() from None
            return Literal(moment, is_datetime=True)
        raise self._error()


def parse_filter(text: str | None) -> Filter | None:
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def parse_select(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def project(obj: dict[str, Any], select: list[str] | None, default: Iterable[str]) -> dict[str, Any]:
    """Return the selected properties (plus id), each present even when null, as Graph does."""
    names = select if select is not None else list(default)
    lowered = {key.lower(): key for key in obj}
    out: dict[str, Any] = {}
    for name in names:
        key = lowered.get(name.lower(), name)
        out[key] = obj.get(key)
    out.setdefault("id", obj.get("id"))
    return out


def parse_top(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        raise bad_request(f"Invalid page size specified: '{raw}'.") from None
    if top < 1 or top > maximum:
        raise unsupported_query(f"Invalid page size specified: '{raw}'. Must be between 1 and {maximum} inclusive.")
    return top


def encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Invalid paging token.", code="Directory_ExpiredPageToken") from None
    if not isinstance(payload, dict):
        raise bad_request("Invalid paging token.", code="Directory_ExpiredPageToken")
    return payload
