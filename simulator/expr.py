"""Scenario expressions: a small language parsed with `ast`, checked against a whitelist and
compiled once into closures over vectorized numpy operations. Nothing is ever run as Python code.

`compile_expr(source, names, expect=...)` returns a `CompiledExpr`: call it with an `EvalContext`
(implemented by the engine) to get one value per row, or one value for a scalar expression.
What expressions may say is in `describe_language()`; the callable functions are in
`simulator/functions.py` (`describe_functions()`).

Types: ``number``, ``bool`` (usable as a number, True = 1) and `Categorical` (stored as int codes
into the domain; only ``==``/``!=``/``in`` with labels or values of the same domain). A string
literal is a category label, resolved against the categorical it is compared with or assigned to.
Numbers are float64 throughout; division by zero and the like give inf/NaN, never an exception.
"""

from __future__ import annotations

import ast
import difflib
import warnings
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Callable, Mapping, Protocol, Union

import numpy as np

from simulator.errors import SpecError
from simulator.functions import (
    AGGREGATE,
    COND,
    ELEMENTWISE,
    FILTER,
    FUNCTIONS,
    NEIGHBOR,
    NUMBER as NUMBER_ARG,
    RANDOM,
    SCALAR,
    VALUE,
    Function,
    describe_functions,
)

__all__ = [
    "BOOL",
    "BUILTIN_ATTRIBUTES",
    "Categorical",
    "CompiledExpr",
    "EvalContext",
    "FUNCTIONS",
    "Names",
    "NUMBER",
    "SlotAllocator",
    "compile_expr",
    "describe_functions",
    "describe_language",
]

MAX_SOURCE_CHARS = 2000
MAX_NODES = 400
MAX_DEPTH = 40

NUMBER = "number"
BOOL = "bool"
_CATEGORY = "category"
_LABEL = "label"  # a string literal not yet resolved against a categorical domain
_EXPECTATIONS = ("any", NUMBER, BOOL, "scalar")

BUILTIN_ATTRIBUTES = ("id", "index", "type")  # present on every agent; see `Names`
_NAMESPACES = ("self", "other", "params", "env")


@dataclass(frozen=True)
class Categorical:
    """The type of a categorical value: int codes indexing `domain`."""

    domain: tuple[str, ...]

    def __str__(self) -> str:
        return "categorical (" + ", ".join(self.domain) + ")"


ResultType = Union[str, Categorical]  # "number" | "bool" | Categorical


class SlotAllocator:
    """Hands out distinct integer slots to random call sites; share one across a rule's expressions."""

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def next(self) -> int:
        slot = self._next
        self._next += 1
        return slot


@dataclass(frozen=True)
class Names:
    """What an expression may refer to.

    `attributes` maps attribute name -> categories (None = numeric). The built-ins ``id`` and
    ``index`` (numeric) are added when absent, and ``type`` when `agent_types` is given (its
    categories); the context's ``attr``/``other`` must serve them. `locals` are rule-local
    variables, referred to by bare name; one named like an attribute is an error.
    """

    attributes: Mapping[str, tuple[str, ...] | None]
    params: frozenset[str] = frozenset()
    env: frozenset[str] = frozenset()
    locals: Mapping[str, "CompiledExpr"] = field(default_factory=dict)
    allow_other: bool = False
    agent_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", frozenset(self.params))
        object.__setattr__(self, "env", frozenset(self.env))

    def all_attributes(self) -> dict[str, tuple[str, ...] | None]:
        builtins: dict[str, tuple[str, ...] | None] = {"id": None, "index": None}
        if self.agent_types is not None:
            builtins["type"] = tuple(self.agent_types)
        return {**builtins, **{k: (tuple(v) if v is not None else None)
                               for k, v in self.attributes.items()}}


class EvalContext(Protocol):
    """What a compiled expression reads from; implemented by the engine.

    ``neighbor_reduce`` and ``regions`` are also called on the population context (for neighbor
    functions inside aggregates). ``draw(slot, k)`` gives each agent the same draws whichever
    context asks, and again when asked again in the same step: neighbor_random of a categorical
    evaluates its argument over the population and over the rows.
    """

    size: int

    def attr(self, name: str) -> np.ndarray: ...
    def other(self, name: str) -> np.ndarray: ...
    def param(self, name: str) -> float: ...
    def env(self, name: str) -> float: ...
    def local(self, name: str) -> np.ndarray | float: ...
    def population(self) -> "EvalContext": ...

    def neighbor_reduce(self, values_all: np.ndarray, op: str, slot: int | None = None) -> np.ndarray:
        """Reduce `values_all` (one per agent) over each row's neighbors; op in
        sum|mean|count|max|min|random|same. ``slot`` is given for op "random" only: take the
        choice's uniform draws from ``draw(slot)``. "same" compares with the row agent's own value."""

    def draw(self, slot: int, k: int = 1) -> np.ndarray: ...
    def regions(self, keys_all: np.ndarray) -> float: ...


@dataclass(frozen=True, eq=False)
class CompiledExpr:
    """A checked expression, callable on an `EvalContext`.

    Row expressions return an array of length ``ctx.size`` (float64 for numbers, bool, int codes
    for categoricals) that never aliases the context's arrays; scalar ones (`is_scalar`) return a
    Python float/bool/int. `reads_self` are attributes read for the rows, `reads_other` for the
    partners, `reads_all` for all agents (neighbor functions and aggregates). Reads of rule-local
    variables are not included: see `locals_used` and those variables' own expressions.
    """

    source: str
    result_type: ResultType
    is_scalar: bool
    reads_self: frozenset[str]
    reads_other: frozenset[str]
    reads_all: frozenset[str]
    uses_neighbors: bool  # looks at the space's neighbors (neighbor functions, largest_region)
    uses_random: bool
    params_used: frozenset[str]
    env_used: frozenset[str]
    locals_used: frozenset[str]
    slots: tuple[int, ...]  # the random slots its call sites draw from
    constant: float | bool | int | None  # the value, when the expression is a constant
    _fn: Callable[[Any], Any] = field(repr=False)
    _copy: bool = field(default=False, repr=False)  # the result may be a context array
    uses_aggregates: bool = False  # calls a population function (mean, share, largest_region, ...)

    def __call__(self, ctx: EvalContext) -> Any:
        with np.errstate(all="ignore"):
            value = self._fn(ctx)
        if self.is_scalar:
            if self.result_type == NUMBER:
                return float(value)
            return bool(value) if self.result_type == BOOL else int(value)
        values = np.asarray(value)
        if self.result_type == NUMBER:
            values = values.astype(np.float64, copy=False)
        elif self.result_type == BOOL:
            values = values.astype(bool, copy=False)
        if values.shape != (ctx.size,):
            return np.broadcast_to(values, (ctx.size,)).copy()
        if (self._copy and values is value) or not values.flags.writeable:  # memoized: shared
            return values.copy()
        return values


def describe_language() -> str:
    """A compact description of the expression language for spec docs and LLM prompts."""
    return (
        "Expressions (no Python beyond this): numbers, True/False, \"labels\" in quotes (category "
        "labels, compared with or assigned to a categorical attribute); + - * / // % ** ; "
        "== != < <= > >= (chainable: 0 < x < 1); x in (\"a\", \"b\"); and, or, not; "
        "a if cond else b. Names: x or self.x (the agent's attribute), other.x (the partner, "
        "interact rules only), params.x, env.x, rule-local variables by name; built-ins self.id, "
        "self.index, self.type. Categorical attributes allow only ==, != and in with labels. "
        "A number used as a condition is true when nonzero. Arguments may be named: "
        "clip(x, lo=0, hi=1), mean(x, filter=state == \"I\"). Division by zero gives inf/NaN. "
        "Functions:\n" + describe_functions()
    )


def compile_expr(
    source: str | int | float | bool,
    names: Names,
    *,
    expect: str | Categorical = "any",
    slots: SlotAllocator | None = None,
    where: str | None = None,
) -> CompiledExpr:
    """Check and compile one expression; raise `SpecError` (with `where` and the column) if invalid.

    `expect`: "any", "number", "bool" (a number counts as true when nonzero), "scalar" (a number or
    condition the same for every agent: constants, params, env, aggregates) or a `Categorical`
    (labels resolve against its domain; a bare label such as ``R`` is accepted). Random call sites
    take their slots from `slots` (a fresh allocator when None).
    """
    if not (isinstance(expect, Categorical) or expect in _EXPECTATIONS):
        raise ValueError(f"expect must be one of {_EXPECTATIONS} or a Categorical, not {expect!r}")
    if isinstance(source, (bool, int, float, np.bool_, np.integer, np.floating)):
        text = str(source)
        compiler = _Compiler(text, text, 0, names, slots, where)
        return compiler.finish(compiler.number_constant(source, None), expect)
    if not isinstance(source, str):
        raise SpecError(f"an expression must be a string or a number, not {type(source).__name__}",
                        where=where)
    if isinstance(expect, Categorical) and _is_bare_label(source, expect, names):
        source = repr(source.strip())
    text, lead = _flatten(source, where)
    tree = _parse(source, text, lead, where)
    compiler = _Compiler(source, text, lead, names, slots, where)
    compiler.check_locals(tree)
    with np.errstate(all="ignore"):
        return compiler.finish(compiler.expr(tree.body, False), expect)


def _is_bare_label(source: str, expect: Categorical, names: Names) -> bool:
    """YAML gives `state: R` for the label "R": accept it where a categorical is expected."""
    label = source.strip()
    return label in expect.domain and label not in names.all_attributes() and label not in names.locals


# --- parsing and limits ---------------------------------------------------------------------


def _flatten(source: str, where: str | None) -> tuple[str, int]:
    """The source on one line (so columns are offsets into it) without leading blanks, and how
    many blanks were dropped."""
    if len(source) > MAX_SOURCE_CHARS:
        raise SpecError(f"expression is too long ({len(source)} characters, at most "
                        f"{MAX_SOURCE_CHARS})", where=where, expression=source[:100] + "...")
    if "\x00" in source:
        raise SpecError("expression contains a null character", where=where,
                        position=source.index("\x00") + 1)
    if "#" in source and ("\n" in source or "\r" in source):
        # Joining the lines would let a comment swallow the rest of the expression.
        raise SpecError("comments (#) are not allowed in multi-line expressions", where=where,
                        expression=source, position=source.index("#") + 1)
    flat = source.translate({ord("\n"): " ", ord("\r"): " ", ord("\t"): " "})
    text = flat.lstrip()
    if not text.strip():
        raise SpecError("expression is empty", where=where, expression=source)
    return text, len(flat) - len(text)


def _parse(source: str, text: str, lead: int, where: str | None) -> ast.Expression:
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal": ours to report, not Python's
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        position = lead + error.offset if isinstance(error.offset, int) else None
        raise SpecError(f"not a valid expression: {error.msg}", where=where, expression=source,
                        position=position) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as error:
        raise SpecError(f"not a valid expression: {type(error).__name__}", where=where,
                        expression=source) from None
    _check_size(tree.body, source, text, lead, where)
    return tree


def _check_size(root: ast.AST, source: str, text: str, lead: int, where: str | None) -> None:
    count, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            limit = (f"at most {MAX_NODES} parts" if count > MAX_NODES
                     else f"nesting at most {MAX_DEPTH} deep")
            raise SpecError(f"expression is too complex ({limit}); split it into rule-local "
                            "variables or simplify it", where=where, expression=source,
                            position=_column(text, lead, node))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, _TOKENS))


_TOKENS = (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)  # not counted


def _column(text: str, lead: int, node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    if offset is None:
        return None
    # col_offset counts UTF-8 bytes; report characters, 1-based.
    return lead + len(text.encode("utf-8")[:offset].decode("utf-8", "replace")) + 1


# --- typed intermediate values ----------------------------------------------------------------

_NO_CONST = object()


@dataclass(frozen=True)
class _Typed:
    """A checked subexpression: its type, its closure and what it depends on."""

    kind: str  # number | bool | category | label
    fn: Callable[[Any], Any] | None  # None for an unresolved label
    node: ast.AST | None
    domain: tuple[str, ...] | None = None  # category
    const: Any = _NO_CONST
    reads: frozenset[str] = frozenset()  # attributes read in the context it is evaluated in
    row_node: ast.AST | None = None  # the first part that varies per row; None: scalar
    leaf: bool = False  # returns a context array as is
    resolve: Callable[[tuple[str, ...]], "_Typed"] | None = None  # label -> category
    labels: tuple[str, ...] = ()

    @property
    def is_const(self) -> bool:
        return self.const is not _NO_CONST


def _constant(kind: str, value: Any, node: ast.AST | None, domain=None) -> _Typed:
    if kind == NUMBER:
        value = np.float64(value)
    elif kind == BOOL:
        value = np.bool_(value)
    else:
        value = int(value)
    return _Typed(kind, lambda ctx: value, node, domain=domain, const=value)


def _combine(kind: str, op: Callable, args: list[_Typed], node: ast.AST, domain=None) -> _Typed:
    """Apply `op` to the arguments' values; fold it now when all are constants (numpy floats)."""
    if all(a.is_const for a in args):
        return _constant(kind, op(*(a.const for a in args)), node, domain)
    fns = tuple(a.fn for a in args)
    if len(fns) == 1:
        (f,) = fns
        fn = lambda ctx: op(f(ctx))  # noqa: E731
    elif len(fns) == 2:
        f, g = fns
        fn = lambda ctx: op(f(ctx), g(ctx))  # noqa: E731
    else:
        fn = lambda ctx: op(*[h(ctx) for h in fns])  # noqa: E731
    return _Typed(kind, fn, node, domain=domain, reads=frozenset().union(*(a.reads for a in args)),
                  row_node=next((a.row_node for a in args if a.row_node is not None), None))


def _full(values: Any, size: int) -> np.ndarray:
    return np.full(size, values) if np.ndim(values) == 0 else values


def _to_float(values: Any) -> Any:
    return np.asarray(values, dtype=np.float64)


def _nonzero(values: Any) -> Any:
    return np.not_equal(values, 0)


def _sentence_list(items, limit: int = 30) -> str:
    items = sorted(items)
    if not items:
        return "(none)"
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


_ARITHMETIC = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
}
_COMPARISONS = {
    ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
    ast.Gt: np.greater, ast.GtE: np.greater_equal,
}
_OPERATOR_HINTS = {
    ast.BitAnd: "use `and`", ast.BitOr: "use `or`", ast.BitXor: "use ** for powers",
    ast.Invert: "use `not`", ast.Is: "use ==", ast.IsNot: "use !=", ast.MatMult: "use *",
}
_FORBIDDEN = {
    ast.Lambda: "lambda functions", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions",
    ast.Subscript: "indexing and slicing (x[...])", ast.Starred: "* unpacking",
    ast.JoinedStr: "f-strings", ast.FormattedValue: "f-strings", ast.NamedExpr: "assignments (:=)",
    ast.List: "lists", ast.Tuple: "tuples", ast.Set: "sets", ast.Dict: "dicts",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slices",
}


class _Compiler:
    """Walks one expression's AST once, type-checking it and building its closure."""

    def __init__(self, source, text, lead, names: Names, slots, where) -> None:
        self.source, self.text, self.lead, self.where = source, text, lead, where
        self.names = names
        self.attributes = names.all_attributes()
        self.slots = slots if slots is not None else SlotAllocator()
        self.reads_all: set[str] = set()
        self.reads_other: set[str] = set()
        self.params_used: set[str] = set()
        self.env_used: set[str] = set()
        self.locals_used: set[str] = set()
        self.slots_used: list[int] = []
        self.uses_neighbors = False
        self.uses_aggregates = False

    # -- errors ------------------------------------------------------------------------------

    def error(self, node: ast.AST | None, message: str, hint: str | None = None) -> SpecError:
        position = _column(self.text, self.lead, node) if node is not None else None
        return SpecError(message, where=self.where, expression=self.source, position=position,
                         hint=hint)

    def snippet(self, node: ast.AST | None) -> str:
        segment = ast.get_source_segment(self.text, node) if node is not None else None
        return segment if segment is not None and len(segment) <= 60 else "this value"

    def check_locals(self, tree: ast.Expression) -> None:
        for name in self.names.locals:
            if name in self.attributes:
                use = next((n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name), None)
                raise self.error(use, f"rule-local variable `{name}` has the name of an attribute; "
                                 "rename the variable")

    # -- entry and exit ------------------------------------------------------------------------

    def finish(self, typed: _Typed, expect) -> CompiledExpr:
        typed = self.expected(typed, expect)
        kind = typed.kind
        result_type = Categorical(typed.domain) if kind == _CATEGORY else kind
        constant = typed.const.item() if isinstance(typed.const, np.generic) else (
            None if typed.const is _NO_CONST else typed.const)
        return CompiledExpr(
            source=self.source,
            result_type=result_type,
            is_scalar=typed.row_node is None,
            reads_self=typed.reads,
            reads_other=frozenset(self.reads_other),
            reads_all=frozenset(self.reads_all),
            uses_neighbors=self.uses_neighbors,
            uses_random=bool(self.slots_used),
            params_used=frozenset(self.params_used),
            env_used=frozenset(self.env_used),
            locals_used=frozenset(self.locals_used),
            slots=tuple(self.slots_used),
            constant=constant,
            _fn=typed.fn,
            _copy=typed.leaf,
            uses_aggregates=self.uses_aggregates,
        )

    def expected(self, typed: _Typed, expect) -> _Typed:
        if isinstance(expect, Categorical):
            return self.to_category(typed, expect.domain)
        if typed.kind == _LABEL:
            raise self.label_error(typed)
        if expect == NUMBER:
            return self.as_number(typed, "where a number is expected")
        if expect == BOOL:
            return self.as_cond(typed, "where a condition is expected")
        if expect == "scalar":
            if typed.row_node is not None:
                raise self.error(typed.row_node, f"`{self.snippet(typed.row_node)}` differs from "
                                 "agent to agent, but this value must be one for the whole "
                                 "population", hint="use an aggregate such as mean(x) or "
                                 "share(cond), params.x or env.x")
            if typed.kind == _CATEGORY:
                raise self.error(typed.node, "expected a number or a condition, got a category")
        return typed

    def number_constant(self, value, node) -> _Typed:
        """A number or bool; literals in the source must be finite (numbers given directly may
        be inf or NaN, which YAML can spell)."""
        if isinstance(value, (bool, np.bool_)):
            return _constant(BOOL, bool(value), node)
        try:
            number = float(value)  # Python ints are never computed with, only converted
        except OverflowError:
            raise self.error(node, "number is too large") from None
        if node is not None and not np.isfinite(number):
            raise self.error(node, "number is too large")
        return _constant(NUMBER, number, node)

    # -- dispatch ------------------------------------------------------------------------------

    def expr(self, node: ast.AST, pop: bool) -> _Typed:
        """Compile `node`; `pop` is True inside arguments evaluated over all agents."""
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            what = _FORBIDDEN.get(type(node), f"{type(node).__name__} expressions")
            raise self.error(node, f"{what} are not allowed in expressions",
                             hint="use arithmetic, comparisons, and/or/not, `a if c else b` and "
                             "the listed functions")
        return method(node, pop)

    def visit_Constant(self, node: ast.Constant, pop: bool) -> _Typed:
        value = node.value
        if isinstance(value, str):
            return self.label(value, node)
        if isinstance(value, (bool, int, float)):
            return self.number_constant(value, node)
        raise self.error(node, f"{type(value).__name__} values ({self.snippet(node)}) are not "
                         "allowed; use numbers, True/False or \"labels\"")

    def visit_BinOp(self, node: ast.BinOp, pop: bool) -> _Typed:
        op = _ARITHMETIC.get(type(node.op))
        if op is None:
            raise self.error(node, f"operator {type(node.op).__name__} is not allowed",
                             hint=_OPERATOR_HINTS.get(type(node.op)))
        left = self.as_number(self.expr(node.left, pop), "in arithmetic")
        right = self.as_number(self.expr(node.right, pop), "in arithmetic")
        return _combine(NUMBER, op, [left, right], node)

    def visit_UnaryOp(self, node: ast.UnaryOp, pop: bool) -> _Typed:
        operand = self.expr(node.operand, pop)
        if isinstance(node.op, ast.Not):
            return _combine(BOOL, np.logical_not, [self.as_cond(operand, "with `not`")], node)
        if isinstance(node.op, ast.USub):
            return _combine(NUMBER, np.negative, [self.as_number(operand, "in arithmetic")], node)
        if isinstance(node.op, ast.UAdd):
            return self.as_number(operand, "in arithmetic")
        raise self.error(node, f"operator {type(node.op).__name__} is not allowed",
                         hint=_OPERATOR_HINTS.get(type(node.op)))

    def visit_BoolOp(self, node: ast.BoolOp, pop: bool) -> _Typed:
        word = "and" if isinstance(node.op, ast.And) else "or"
        ufunc = np.logical_and if word == "and" else np.logical_or
        values = [self.as_cond(self.expr(v, pop), f"with `{word}`") for v in node.values]
        return _combine(BOOL, lambda *v: reduce(ufunc, v), values, node)

    def visit_IfExp(self, node: ast.IfExp, pop: bool) -> _Typed:
        condition = self.as_cond(self.expr(node.test, pop), "as the condition of `if`")
        return self.branches(condition, self.expr(node.body, pop), self.expr(node.orelse, pop), node)

    # -- names -----------------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name, pop: bool) -> _Typed:
        name = node.id
        self.check_identifier(name, node)
        if name in _NAMESPACES:
            raise self.error(node, f"`{name}` alone is not a value; write {name}.<name>")
        if name in self.names.locals:
            return self.local(name, node, pop)
        if name in self.attributes:
            return self.attribute(name, node)
        raise self.unknown_name(name, node)

    def visit_Attribute(self, node: ast.Attribute, pop: bool) -> _Typed:
        base = node.value
        if not (isinstance(base, ast.Name) and base.id in _NAMESPACES):
            raise self.error(node, f"`{self.snippet(node)}`: only self.x, other.x, params.x and "
                             "env.x may use a dot", hint="functions are called by name, e.g. abs(x)")
        namespace, name = base.id, node.attr
        self.check_identifier(name, node)
        if namespace == "self":
            self.check_known(name, self.attributes, node, "attribute")
            return self.attribute(name, node)
        if namespace == "other":
            return self.other(name, node, pop)
        if namespace == "params":
            self.check_known(name, self.names.params, node, "parameter", prefix="params.")
            self.params_used.add(name)
            return _Typed(NUMBER, lambda ctx: float(ctx.param(name)), node)
        self.check_known(name, self.names.env, node, "environment variable", prefix="env.")
        self.env_used.add(name)
        return _Typed(NUMBER, lambda ctx: float(ctx.env(name)), node)

    def attribute(self, name: str, node: ast.AST) -> _Typed:
        return self.read(name, node, lambda ctx: ctx.attr(name), frozenset({name}))

    def other(self, name: str, node: ast.AST, pop: bool) -> _Typed:
        if not self.names.allow_other:
            raise self.error(node, "`other.` (the partner) is only available in pairwise "
                             "(interact) rules")
        if pop:
            raise self.error(node, "`other.` cannot be used inside neighbor or population "
                             "functions, whose arguments are read for every agent")
        self.check_known(name, self.attributes, node, "attribute", prefix="other.")
        self.reads_other.add(name)
        return self.read(name, node, lambda ctx: ctx.other(name), frozenset())

    def read(self, name: str, node: ast.AST, get: Callable, reads: frozenset[str]) -> _Typed:
        """A per-row attribute value: float64 for numbers, codes for categoricals."""
        domain = self.attributes[name]
        fn = (lambda ctx: _to_float(get(ctx))) if domain is None else get
        return _Typed(NUMBER if domain is None else _CATEGORY, fn, node, domain=domain,
                      reads=reads, row_node=node, leaf=True)

    def local(self, name: str, node: ast.AST, pop: bool) -> _Typed:
        variable = self.names.locals[name]
        if pop and not variable.is_scalar:
            raise self.error(node, f"rule-local variable `{name}` is computed for the rule's "
                             "agents only and cannot be used inside neighbor or population "
                             "functions", hint="repeat its expression there instead")
        self.locals_used.add(name)
        result = variable.result_type
        kind = _CATEGORY if isinstance(result, Categorical) else result
        get = lambda ctx: ctx.local(name)  # noqa: E731
        return _Typed(kind, (lambda ctx: _to_float(get(ctx))) if kind == NUMBER else get, node,
                      domain=getattr(result, "domain", None),
                      row_node=None if variable.is_scalar else node, leaf=True)

    def check_identifier(self, name: str, node: ast.AST) -> None:
        if name.startswith("_"):
            raise self.error(node, f"names starting with an underscore (`{name}`) are not allowed")

    def check_known(self, name, known, node, what: str, prefix: str = "") -> None:
        if name in known:
            return
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(prefix + c for c in close)}?" if close else None
        raise self.error(node, f"unknown {what} `{prefix}{name}`; valid: {_sentence_list(known)}",
                         hint=hint)

    def unknown_name(self, name: str, node: ast.AST) -> SpecError:
        if name in FUNCTIONS:
            return self.error(node, f"`{name}` is a function; call it: {FUNCTIONS[name].signature}")
        if name in self.names.params or name in self.names.env:
            where = "params" if name in self.names.params else "env"
            return self.error(node, f"unknown name `{name}`", hint=f"write {where}.{name}")
        if any(name in (domain or ()) for domain in self.attributes.values()):
            return self.error(node, f"unknown name `{name}`",
                              hint=f"category labels go in quotes: \"{name}\"")
        if name in ("true", "false"):
            return self.error(node, f"unknown name `{name}`", hint=f"write {name.capitalize()}")
        valid = list(self.attributes) + list(self.names.locals)
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        return self.error(node, f"unknown name `{name}`; valid names: {_sentence_list(valid)}",
                          hint=f"did you mean {', '.join(close)}?" if close else None)

    # -- types -----------------------------------------------------------------------------------

    def as_number(self, typed: _Typed, purpose: str) -> _Typed:
        if typed.kind == NUMBER:
            return typed
        if typed.kind == BOOL:
            return _combine(NUMBER, _to_float, [typed], typed.node)
        raise self.kind_error(typed, purpose)

    def as_cond(self, typed: _Typed, purpose: str) -> _Typed:
        if typed.kind == BOOL:
            return typed
        if typed.kind == NUMBER:
            return _combine(BOOL, _nonzero, [typed], typed.node)
        raise self.kind_error(typed, purpose)

    def as_value(self, typed: _Typed) -> _Typed:
        if typed.kind == _LABEL:
            raise self.label_error(typed)
        return typed

    def kind_error(self, typed: _Typed, purpose: str) -> SpecError:
        if typed.kind == _LABEL:
            return self.label_error(typed)
        text = self.snippet(typed.node)
        return self.error(typed.node, f"`{text}` is categorical ({', '.join(typed.domain)}) and "
                          f"cannot be used {purpose}", hint=f"compare it with a label, e.g. "
                          f"{text} == \"{typed.domain[0]}\"" if typed.domain else None)

    def label_error(self, typed: _Typed) -> SpecError:
        label = typed.labels[0] if typed.labels else ""
        return self.error(typed.node, f"the string \"{label}\" can only be a category label: "
                          "compare it with a categorical attribute or assign it to one",
                          hint=f"e.g. state == \"{label}\"")

    def label(self, value: str, node: ast.AST) -> _Typed:
        def resolve(domain: tuple[str, ...]) -> _Typed:
            if value not in domain:
                close = difflib.get_close_matches(value, domain, n=3, cutoff=0.6)
                raise self.error(node, f"unknown label \"{value}\"; valid labels: "
                                 f"{', '.join(domain)}",
                                 hint=f"did you mean \"{close[0]}\"?" if close else None)
            return _constant(_CATEGORY, domain.index(value), node, domain)

        return _Typed(_LABEL, None, node, resolve=resolve, labels=(value,))

    def to_category(self, typed: _Typed, domain: tuple[str, ...]) -> _Typed:
        if typed.kind == _LABEL:
            return typed.resolve(domain)
        if typed.kind == _CATEGORY and typed.domain == domain:
            return typed
        got = f"categories ({', '.join(typed.domain)})" if typed.kind == _CATEGORY else f"a {typed.kind}"
        raise self.error(typed.node, f"expected one of the labels {', '.join(domain)} (in quotes) "
                         f"but `{self.snippet(typed.node)}` is {got}")

    def branches(self, condition: _Typed, a: _Typed, b: _Typed, node: ast.AST) -> _Typed:
        """`a if condition else b`: both numbers/conditions, or both of one category (labels)."""
        kinds = {a.kind, b.kind}
        if kinds <= {NUMBER, BOOL}:
            if kinds == {BOOL}:
                return _combine(BOOL, np.where, [condition, a, b], node)
            a, b = self.as_number(a, "beside a number"), self.as_number(b, "beside a number")
            return _combine(NUMBER, np.where, [condition, a, b], node)
        if kinds == {_LABEL}:
            return _Typed(_LABEL, None, node, labels=a.labels + b.labels,
                          resolve=lambda domain: self.branches(condition, a.resolve(domain),
                                                               b.resolve(domain), node))
        category = a if a.kind == _CATEGORY else b
        if category.kind != _CATEGORY:  # a label and a number
            raise self.label_error(a if a.kind == _LABEL else b)
        a, b = self.to_category(a, category.domain), self.to_category(b, category.domain)
        return _combine(_CATEGORY, np.where, [condition, a, b], node, domain=category.domain)

    # -- comparisons -----------------------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare, pop: bool) -> _Typed:
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            return self.membership(node, pop)
        operands = [self.expr(n, pop) for n in (node.left, *node.comparators)]
        operands = self.resolve_labels(operands)
        ufuncs = []
        for i, op in enumerate(node.ops):
            if type(op) not in _COMPARISONS:
                raise self.error(node, f"comparison {type(op).__name__} is not allowed",
                                 hint=_OPERATOR_HINTS.get(type(op)))
            self.check_comparable(operands[i], operands[i + 1], op, node)
            ufuncs.append(_COMPARISONS[type(op)])
        if len(ufuncs) == 1:
            return _combine(BOOL, ufuncs[0], operands, node)

        def chain(*values):  # each operand evaluated once
            result = ufuncs[0](values[0], values[1])
            for i in range(1, len(ufuncs)):
                result = np.logical_and(result, ufuncs[i](values[i], values[i + 1]))
            return result

        return _combine(BOOL, chain, operands, node)

    def membership(self, node: ast.Compare, pop: bool) -> _Typed:
        container = node.comparators[-1]
        if len(node.ops) != 1:
            raise self.error(node, "`in` cannot be chained with other comparisons")
        if not isinstance(container, (ast.Tuple, ast.List, ast.Set)) or not container.elts:
            raise self.error(container, "`in` needs a non-empty list of values, e.g. "
                             "state in (\"S\", \"I\")")
        items = self.resolve_labels([self.expr(n, pop) for n in (node.left, *container.elts)], anchor=0)
        for item in items[1:]:
            self.check_comparable(items[0], item, ast.Eq(), node)
        negate = isinstance(node.ops[0], ast.NotIn)

        def member(value, *options):
            found = reduce(np.logical_or, [np.equal(value, option) for option in options])
            return np.logical_not(found) if negate else found

        return _combine(BOOL, member, items, node)

    def resolve_labels(self, operands: list[_Typed], anchor: int | None = None) -> list[_Typed]:
        """Resolve each label against a categorical operand beside it, or, for `in`, against the
        anchor (the left side), which itself looks at all the options."""
        resolved = list(operands)
        order = list(range(len(operands)))
        if anchor is not None:
            order.insert(0, order.pop(anchor))
        for i in order:
            if resolved[i].kind != _LABEL:
                continue
            if anchor is None:
                near = resolved[max(i - 1, 0): i + 2]
            else:
                near = resolved if anchor == i else [resolved[anchor]]
            domain = next((t.domain for t in near if t.kind == _CATEGORY), None)
            if domain is not None:
                resolved[i] = resolved[i].resolve(domain)
        return resolved

    def check_comparable(self, a: _Typed, b: _Typed, op: ast.cmpop, node: ast.AST) -> None:
        categorical = {a.kind, b.kind} & {_CATEGORY, _LABEL}
        if not categorical:
            return
        if not isinstance(op, (ast.Eq, ast.NotEq)):
            raise self.error(node, "categories have no order: compare them only with == or !=")
        if a.kind == _LABEL or b.kind == _LABEL:  # not resolvable: two labels, or a label and a number
            raise self.label_error(a if a.kind == _LABEL else b)
        if a.kind != b.kind:
            category = a if a.kind == _CATEGORY else b
            raise self.kind_error(category, "in a comparison with a number")
        if a.domain != b.domain:
            raise self.error(node, f"`{self.snippet(a.node)}` and `{self.snippet(b.node)}` have "
                             "different categories and cannot be compared")

    # -- calls -----------------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call, pop: bool) -> _Typed:
        if not isinstance(node.func, ast.Name):
            raise self.error(node, f"`{self.snippet(node.func)}(...)`: only the listed functions "
                             "can be called, by name", hint="e.g. exp(x), not math.exp(x)")
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            close = difflib.get_close_matches(node.func.id, list(FUNCTIONS), n=3, cutoff=0.6)
            raise self.error(node, f"unknown function `{node.func.id}`",
                             hint=f"did you mean {', '.join(close)}?" if close else
                             f"functions: {', '.join(FUNCTIONS)}")
        arguments = self.bind(function, node)
        if function.name == "where":
            condition, a, b = (self.expr(n, pop) for n in arguments)
            return self.branches(self.as_cond(condition, "as the condition of where()"), a, b, node)
        compile_kind = {ELEMENTWISE: self.elementwise, RANDOM: self.random,
                        NEIGHBOR: self.neighbor, AGGREGATE: self.aggregate}[function.kind]
        return compile_kind(function, arguments, node, pop)

    def bind(self, function: Function, node: ast.Call) -> list[ast.AST | None]:
        """The argument nodes per parameter (None: not given), or all of them for variadics."""
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise self.error(argument, "* unpacking is not allowed")
        usage = f"usage: {function.signature}" + (f"; {function.hint}" if function.hint else "")
        if function.variadic:
            if node.keywords:
                raise self.error(node, f"{function.name}() takes no keyword arguments", hint=usage)
            if len(node.args) < function.required:
                raise self.error(node, f"{function.name}() needs at least {function.required} "
                                 "arguments", hint=usage)
            return list(node.args)
        if len(node.args) > len(function.params):
            raise self.error(node, f"{function.name}() takes at most {len(function.params)} "
                             f"arguments, got {len(node.args)}", hint=usage)
        bound: list[ast.AST | None] = [*node.args] + [None] * (len(function.params) - len(node.args))
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(keyword.value, "** unpacking is not allowed")
            if keyword.arg not in function.params:
                raise self.error(keyword.value, f"{function.name}() has no parameter "
                                 f"`{keyword.arg}`", hint=usage)
            index = function.params.index(keyword.arg)
            if bound[index] is not None:
                raise self.error(keyword.value, f"{function.name}() got `{keyword.arg}` twice")
            bound[index] = keyword.value
        given = [b is not None for b in bound]
        if not all(given[: function.required]) or given != sorted(given, reverse=True) or (
                function.arities and sum(given) not in function.arities):
            raise self.error(node, f"{function.name}() is called with the wrong arguments",
                             hint=usage)
        return bound

    def argument(self, function: Function, position: int, node: ast.AST, pop: bool) -> _Typed:
        typed = self.expr(node, pop)
        kind = function.param_type(position)
        purpose = f"as an argument of {function.name}()"
        if kind == NUMBER_ARG:
            return self.as_number(typed, purpose)
        if kind == COND:
            return self.as_cond(typed, purpose)
        if kind == SCALAR:
            typed = self.as_number(typed, purpose)
            if typed.row_node is not None:
                raise self.error(node, f"argument `{function.params[position]}` of "
                                 f"{function.name}() must be the same for every agent",
                                 hint="use a number, params.x or env.x")
            return typed
        assert kind == VALUE, kind
        return self.as_value(typed)

    def arguments(self, function, nodes, pop) -> list[tuple[str, str, _Typed]]:
        """(parameter name, parameter type, compiled argument) for each argument given."""
        return [(function.params[min(i, len(function.params) - 1)], function.param_type(i),
                 self.argument(function, i, n, pop)) for i, n in enumerate(nodes) if n is not None]

    def elementwise(self, function: Function, nodes, node: ast.Call, pop: bool) -> _Typed:
        args = [typed for _, _, typed in self.arguments(function, nodes, pop)]
        return _combine(function.result, function.impl, args, node)

    def take_slot(self) -> int:
        slot = self.slots.next()
        self.slots_used.append(slot)
        return slot

    def random(self, function: Function, nodes, node: ast.Call, pop: bool) -> _Typed:
        args = [typed for _, _, typed in self.arguments(function, nodes, pop)]
        slot, draws, impl = self.take_slot(), function.draws, function.impl
        fns = [a.fn for a in args]

        def fn(ctx):
            u = ctx.draw(slot) if draws == 1 else ctx.draw(slot, draws)
            return impl(u, *[f(ctx) for f in fns])

        return _Typed(function.result, fn, node, reads=frozenset().union(*(a.reads for a in args)),
                      row_node=node)

    def neighbor(self, function: Function, nodes, node: ast.Call, pop: bool) -> _Typed:
        self.uses_neighbors = True
        args = [typed for _, _, typed in self.arguments(function, nodes, True)]
        argument = args[0] if args else None
        slot = self.take_slot() if function.draws else None
        impl = function.impl

        def fn(ctx):
            population = ctx.population()
            if argument is None:
                return impl(ctx, np.ones(population.size), slot)
            return impl(ctx, _full(argument.fn(population), population.size), slot)

        memo = None if function.draws else self.memo_key(("neighbor", function.name), nodes)
        if memo is not None:
            fn = _memoized(fn, *memo, population=False)
        reads = frozenset()
        if argument is not None:
            self.reads_all.update(argument.reads)
        if function.result == "like" and argument.kind == _CATEGORY:
            # Categories have no NaN: an agent without neighbors keeps its own value.
            reduced, own, reads = fn, argument.fn, argument.reads
            fn = lambda ctx: _fill_missing(reduced(ctx), own, ctx)  # noqa: E731
            return _Typed(_CATEGORY, fn, node, domain=argument.domain, reads=reads, row_node=node)
        return _Typed(NUMBER, fn, node, reads=reads, row_node=node)

    def aggregate(self, function: Function, nodes, node: ast.Call, pop: bool) -> _Typed:
        self.uses_aggregates = True
        if function.name == "largest_region":  # regions are connected through the neighbors
            self.uses_neighbors = True
        args = self.arguments(function, nodes, True)
        for _, _, typed in args:
            self.reads_all.update(typed.reads)
        mask = next((typed.fn for name, _, typed in args if name == FILTER), None)
        values = [(typed.fn, kind != SCALAR) for name, kind, typed in args if name != FILTER]
        impl = function.impl

        def fn(ctx):
            population = ctx.population()
            size = population.size
            keep = None if mask is None else _full(mask(population), size)
            evaluated = []
            for value_fn, per_agent in values:
                value = value_fn(population)
                if per_agent:
                    value = _full(value, size)
                    evaluated.append(value if keep is None else value[keep])
                else:
                    evaluated.append(float(value))
            return impl(ctx, *evaluated)

        memo = self.memo_key(("aggregate", function.name), nodes)
        if memo is not None:
            fn = _memoized(fn, *memo, population=True)
        return _Typed(NUMBER, fn, node)

    def memo_key(self, head: tuple, nodes) -> tuple[tuple, tuple[str, ...], tuple[str, ...]] | None:
        """What identifies a neighbor function's or aggregate's value besides the state and rows:
        ``(key, params read, env read)``, the key holding the canonical source (AST dump) of its
        arguments; None when it must not be memoized (random draws or rule-local variables)."""
        params, env = set(), set()
        for root in nodes:
            if root is None:
                continue
            for sub in ast.walk(root):
                if isinstance(sub, ast.Call):
                    called = FUNCTIONS.get(sub.func.id) if isinstance(sub.func, ast.Name) else None
                    if called is None or called.draws or called.kind == RANDOM:
                        return None
                elif isinstance(sub, ast.Name) and sub.id in self.names.locals:
                    return None
                elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    if sub.value.id == "params":
                        params.add(sub.attr)
                    elif sub.value.id == "env":
                        env.add(sub.attr)
                    elif sub.value.id == "other":
                        return None
        source = tuple(None if n is None else ast.dump(n) for n in nodes)
        return (*head, source), tuple(sorted(params)), tuple(sorted(env))


def _memoized(fn: Callable, key: tuple, params: tuple[str, ...], env: tuple[str, ...],
              population: bool) -> Callable:
    """``fn`` through the context's ``memo`` (when it has one), keyed by ``key`` and the values
    of the parameters and environment variables it reads. Aggregates (``population``) do not
    depend on the rows, so they are memoized on the population context."""

    def memoized(ctx):
        where = ctx.population() if population else ctx
        memo = getattr(where, "memo", None)
        if memo is None:
            return fn(ctx)
        full_key = key
        if params or env:
            full_key = (key, tuple(ctx.param(p) for p in params), tuple(ctx.env(e) for e in env))
        return memo(full_key, lambda: fn(ctx))

    return memoized


def _fill_missing(reduced: np.ndarray, own: Callable, ctx) -> np.ndarray:
    missing = np.isnan(reduced)
    if missing.any():
        reduced = np.where(missing, _full(own(ctx), ctx.size), reduced)
    return reduced.astype(np.int64)
