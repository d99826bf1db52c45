"""GitHub Actions `${{ }}` expressions, the part of the language our workflow
uses, evaluated as GitHub does (docs: "Evaluate expressions in workflows
and actions"). Fails closed: an unknown context, function or token is an
error, never a guess, so `lab.workflow_steps` cannot run a step GitHub
would have skipped, or the other way round."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||<=|>=|[!<>()\[\],.])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


class ExpressionError(LabError):
    pass


@dataclass
class Context:
    """What an expression can read: the contexts by name, the job's status
    so far (for success() and failure()), and the workspace for hashFiles()."""

    contexts: Mapping[str, Any]
    workspace: Path
    job_failed: bool = False


def _tokens(text: str) -> list[tuple[str, str]]:
    found, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read the expression {text!r} at {text[pos:]!r}")
        kind = next(k for k, v in m.groupdict().items() if v is not None)
        found.append((kind, m[kind]))
        pos = m.end()
    return found


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value == value  # NaN is false


def _as_number(value: Any) -> float:
    if value is None or value is False or value == "":
        return 0.0
    if value is True:
        return 1.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return a.lower() == b.lower() if isinstance(a, str) else bool(a == b)  # strings compare ignoring case
    return _as_number(a) == _as_number(b)


def as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def hash_files(workspace: Path, patterns: list[str]) -> str:
    """sha256 over the sha256 of each file the globs match, in path order; '' if none (as GitHub's hashFiles)."""
    # A trailing `**` matches every file below (pathlib's matches directories only).
    globs = [g for pat in patterns for g in ([pat, pat + "/*"] if pat.endswith("**") else [pat])]
    files = sorted({p for g in globs for p in workspace.glob(g) if p.is_file()})
    if not files:
        return ""
    outer = hashlib.sha256()
    for f in files:
        outer.update(hashlib.sha256(f.read_bytes()).digest())
    return outer.hexdigest()


class _Parser:
    def __init__(self, text: str, ctx: Context) -> None:
        self.text, self.ctx = text, ctx
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return value

    def _chain(self, op: str, operand: Callable[[], Any], keep_left_if_truthy: bool) -> Any:
        """`a op b op ...` as GitHub evaluates `||` and `&&`: the value of an operand, not a bool."""
        value = operand()
        while self.peek() == ("op", op):
            self.take()
            right = operand()
            value = value if _truthy(value) == keep_left_if_truthy else right
        return value

    def or_(self) -> Any:
        return self._chain("||", self.and_, keep_left_if_truthy=True)

    def and_(self) -> Any:
        return self._chain("&&", self.compare, keep_left_if_truthy=False)

    def compare(self) -> Any:
        value = self.unary()
        while (tok := self.peek()) and tok[1] in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            right = self.unary()
            if op in ("==", "!="):
                value = _equal(value, right) == (op == "==")
            else:
                a, b = _as_number(value), _as_number(right)
                value = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value)
        if value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        if self.peek() == ("op", "("):
            return self.call(value)
        return self.path(value)

    def call(self, name: str) -> Any:
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        functions: dict[str, Callable[[], Any]] = {
            "always": lambda: True,
            "success": lambda: not self.ctx.job_failed,
            "failure": lambda: self.ctx.job_failed,
            "cancelled": lambda: False,
            "hashFiles": lambda: hash_files(self.ctx.workspace, [as_string(a) for a in args]),
            "contains": lambda: as_string(args[1]).lower() in as_string(args[0]).lower(),
            "startsWith": lambda: as_string(args[0]).lower().startswith(as_string(args[1]).lower()),
        }
        if name not in functions:
            raise ExpressionError(f"the function {name}() is not supported here (in {self.text!r})")
        return functions[name]()

    def path(self, root: str) -> Any:
        if root not in self.ctx.contexts:
            raise ExpressionError(f"unknown context {root!r} in {self.text!r}")
        value = self.ctx.contexts[root]
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                key = self.take()[1]
            else:
                key = as_string(self.or_())
                self.take("]")
            value = value.get(key) if isinstance(value, Mapping) else None  # a missing property is null
        return value


def evaluate(expression: str, ctx: Context) -> Any:
    """The value of one expression (the text inside `${{ }}`, or an `if:` without them)."""
    m = _TEMPLATE.fullmatch(expression.strip())
    return _Parser(m[1] if m else expression, ctx).parse()


def condition(expression: str | bool | None, ctx: Context) -> bool:
    """Whether a step with this `if:` runs: no status function in it means `success() && (...)`."""
    if expression is None:
        return not ctx.job_failed
    if isinstance(expression, bool):
        return expression and not ctx.job_failed
    text = expression.strip()
    if m := _TEMPLATE.fullmatch(text):
        text = m[1]
    result = _truthy(evaluate(text, ctx))
    uses_status = any(re.search(rf"\b{f}\s*\(", text) for f in STATUS_FUNCTIONS)
    return result if uses_status else result and not ctx.job_failed


def expand(text: str, ctx: Context) -> str:
    """A string with every `${{ expr }}` replaced by its value."""
    return _TEMPLATE.sub(lambda m: as_string(evaluate(m[1], ctx)), text)
