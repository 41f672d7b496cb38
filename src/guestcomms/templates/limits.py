"""Resource limits for template renders: how much one render may compute and produce.

A template is code written by an organization's staff, run by the worker inside its event
loop, so a runaway render would stall every send of the worker. The sandbox
(``templates.sandbox``) keeps templates away from Python's internals; this module keeps them
from eating the worker's CPU or memory. Each limit raises ``SecurityError``, which the
renderer turns into ``TemplateRenderError`` (the delivery fails permanently, the worker goes
on). The limits:

* **Values** (``MAX_VALUE_SIZE``): an operation that could build a string, list or number
  much larger than its operands (``*``, ``**``, ``center``, ``indent``, ``join``,
  ``replace``, ``format``, ``batch``, ``str.ljust``...) is checked *before* it runs, and
  ``+``, ``~`` and every call and filter result are checked after, so no value grows
  beyond the bound one step at a time.
* **Steps** (``MAX_STEPS``): every loop iteration and every call counts one step; a render
  stops after that many, and every ``CHECK_EVERY`` steps its CPU time is compared with
  ``MAX_RENDER_CPU_SECONDS`` (one clock read per ``CHECK_EVERY`` steps, none for a render
  smaller than that).
* **Output** (``MAX_OUTPUT_CHARS``): a part's output is collected in batches and the render
  stops once the total passes the bound.

The per-render state lives in a thread-local :class:`RenderBudget` that the renderer sets
with :func:`budget`; loops reach it through the ``loop_guard`` filter, which
:func:`guard_loops` wraps around every ``{% for %}`` iterable when a template is parsed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import wraps
from itertools import islice
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.visitor import NodeTransformer

__all__ = [
    "CHECK_EVERY",
    "LOOP_GUARD",
    "MAX_INT_BITS",
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_CPU_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_SIZE",
    "VALUE_GUARD",
    "RenderBudget",
    "budget",
    "check_binop",
    "check_call",
    "checked_size",
    "collect",
    "guard_filters",
    "guard_loops",
    "loop_guard",
    "size_of",
    "step",
]

MAX_VALUE_SIZE = 1_000_000  # characters (or items) in one value a template builds
MAX_INT_BITS = 100_000  # bits in one integer a template computes (about 30,000 digits)
MAX_OUTPUT_CHARS = 1_000_000  # characters one part (subject, html, text) may render to
MAX_STEPS = 1_000_000  # loop iterations plus calls in one render
CHECK_EVERY = 1_000  # steps between two looks at the CPU clock
MAX_RENDER_CPU_SECONDS = 1.0  # CPU seconds of the rendering thread for one render
OUTPUT_BATCH = 16  # output chunks joined between two size checks
HEAVY_SIZE = 10_000  # characters or items: building a larger value also checks the clock
LOOP_GUARD = "loop_guard"  # the filter guard_loops wraps around loop iterables
VALUE_GUARD = "value_guard"  # the filter guard_loops wraps around each `a ~ b`


class RenderBudget:
    """What is left of one render's steps, and when its CPU time runs out.

    The clock is read lazily: the first check, after ``CHECK_EVERY`` steps, sets the
    deadline, so a render of fewer steps never reads it.
    """

    __slots__ = ("deadline", "left", "until_check")

    def __init__(self) -> None:
        self.left = MAX_STEPS
        self.until_check = CHECK_EVERY
        self.deadline: float | None = None

    def check(self) -> None:
        """Called every ``CHECK_EVERY`` steps; raise ``SecurityError`` past a limit."""
        self.left -= CHECK_EVERY
        self.until_check = CHECK_EVERY
        if self.left <= 0:
            raise SecurityError(f"the template ran more than {MAX_STEPS} loop steps and calls")
        self.check_clock()

    def check_clock(self) -> None:
        """Raise ``SecurityError`` once the render's CPU time is spent (the first call
        starts the clock). Also called after each operation on a large value, so a few
        slow steps cannot run for long between two step checks."""
        now = time.thread_time()
        if self.deadline is None:
            self.deadline = now + MAX_RENDER_CPU_SECONDS
        elif now > self.deadline:
            raise SecurityError(f"the template used more than {MAX_RENDER_CPU_SECONDS} s of CPU")


class _State(threading.local):
    budget: RenderBudget | None = None


_state = _State()


class budget:  # noqa: N801 (used as a function: `with budget():`)
    """Give the renders inside the ``with`` block one fresh :class:`RenderBudget` (for
    this thread). A class rather than ``@contextmanager``: a third of the cost."""

    __slots__ = ("previous",)

    def __enter__(self) -> RenderBudget:
        self.previous = _state.budget
        current = _state.budget = RenderBudget()
        return current

    def __exit__(self, *exc_info: object) -> None:
        _state.budget = self.previous


def step() -> None:
    """Count one step against the current render's budget (no-op outside a render)."""
    current = _state.budget
    if current is not None:
        current.until_check -= 1
        if current.until_check <= 0:
            current.check()


def loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    """Yield ``iterable``'s items, counting each one as a step of the current render."""
    current = _state.budget
    if current is None:  # rendered outside TemplateRenderer (a test, a preview tool)
        yield from iterable
        return
    for item in iterable:
        current.until_check -= 1
        if current.until_check <= 0:
            current.check()
        yield item


class _GuardLoops(NodeTransformer):
    """Wraps the iterable of every ``{% for %}`` in ``loop_guard`` and every ``~`` (which
    the sandbox cannot intercept like ``+``) in ``value_guard``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (NodeVisitor's naming)
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_GUARD, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Filter(node, VALUE_GUARD, [], [], None, None, lineno=node.lineno)


def guard_loops(ast: nodes.Template) -> nodes.Template:
    """Return ``ast`` with every loop and ``~`` guarded; called on each parse by the
    sandbox, so what is validated at save is what renders."""
    guarded: nodes.Template = _GuardLoops().visit(ast)
    return guarded


def collect(chunks: Iterable[str]) -> str:
    """Join a render's output chunks; ``SecurityError`` once it passes ``MAX_OUTPUT_CHARS``.

    Chunks are joined ``OUTPUT_BATCH`` at a time (in C) and each batch measured, so a small
    template pays well under a microsecond for the check, and a runaway one holds at most
    one batch (each chunk at most ``MAX_VALUE_SIZE``) beyond the bound.
    """
    iterator = iter(chunks)
    batch = "".join(islice(iterator, OUTPUT_BATCH))
    total = len(batch)
    if total > MAX_OUTPUT_CHARS:
        raise _too_long()
    following = "".join(islice(iterator, OUTPUT_BATCH))
    if not following:
        return batch
    parts = [batch]
    while following:
        total += len(following)
        if total > MAX_OUTPUT_CHARS:
            raise _too_long()
        parts.append(following)
        following = "".join(islice(iterator, OUTPUT_BATCH))
    return "".join(parts)


def _too_long() -> SecurityError:
    return SecurityError(f"the template rendered more than {MAX_OUTPUT_CHARS} characters")


# --- sizes of values ---------------------------------------------------------------------------


def size_of(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """The characters of a string, the items (and their sizes) of a container, the digits of
    an integer; counting stops a little past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3
    if isinstance(value, list | tuple | set | frozenset | dict):
        total = len(value)
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            if total > limit:
                break
            total += size_of(item, limit - total)
        return total
    return 0


def checked_size(value: Any) -> Any:
    """Return ``value``, or raise ``SecurityError`` when it is larger than ``MAX_VALUE_SIZE``.

    A value past ``HEAVY_SIZE`` took real work to build, so the CPU clock is checked too.
    """
    size = size_of(value)
    if size > HEAVY_SIZE:
        if size > MAX_VALUE_SIZE:
            raise SecurityError(f"the template built a value larger than {MAX_VALUE_SIZE}")
        current = _state.budget
        if current is not None:
            current.check_clock()
    return value


def _refuse_over(estimate: int, what: str) -> None:
    if estimate > MAX_VALUE_SIZE:
        raise SecurityError(f"{what} would build a value larger than {MAX_VALUE_SIZE}")


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*`` and ``**`` whose result would pass the value bounds (before computing)."""
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                _refuse_over(size_of(sequence) * count, "repeating a sequence")
        if _ints(left, right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"a product larger than {MAX_INT_BITS} bits")
    elif operator == "**" and _ints(left, right) and right > 0:
        bits: int = max(left.bit_length(), 1) * right
        if bits > MAX_INT_BITS:
            raise SecurityError(f"a power larger than {MAX_INT_BITS} bits")


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) for v in values)


# --- calls and filters that can amplify ----------------------------------------------------


def _replaced_size(text: str, old: Any, new: Any, count: Any = None) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


def _joined_size(items: Any, separator: Any) -> int:
    # items is a string or a list here (_materialized turned anything lazy into a list)
    if not isinstance(items, list | tuple | str):
        return 0
    sep = len(separator) if isinstance(separator, str) else 0
    return size_of(items) + sep * len(items)


def _materialized(items: Any) -> Any:
    """A lazy iterable (``range``, ``map``...) as a list, so its joined size can be known;
    str.join would make the same list before joining anyway."""
    if isinstance(items, str | list | tuple | dict) or not isinstance(items, Iterable):
        return items
    return list(islice(items, MAX_VALUE_SIZE + 1))


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1 if isinstance(text, str) else 1


# str methods whose result can be much larger than the string: name -> estimated size
_STR_METHODS: dict[str, Callable[..., int]] = {
    "center": lambda s, width=0, *_: _int(width),
    "ljust": lambda s, width=0, *_: _int(width),
    "rjust": lambda s, width=0, *_: _int(width),
    "zfill": lambda s, width=0, *_: _int(width),
    "expandtabs": lambda s, tabsize=8, *_: len(s) * max(_int(tabsize), 1),
    "replace": _replaced_size,
    "join": lambda s, items=(), *_: _joined_size(items, s),
}


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a string method that would build a value past ``MAX_VALUE_SIZE``;
    return the positional arguments to call with (a lazy iterable given to ``str.join``
    becomes a list)."""
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        name = getattr(obj, "__name__", "")
        estimate = _STR_METHODS.get(name)
        if estimate is not None:
            if name == "join" and args:
                args = (_materialized(args[0]), *args[1:])
            _refuse_over(estimate(owner, *args, *kwargs.values()), f"str.{name}")
    return args


_FORMAT_NUMBER = re.compile(r"%[^a-zA-Z%]*?(\d+)")


def _format_size(value: Any, *args: Any, **kwargs: Any) -> int:
    # "%100000000s" | format(x): the width in the format string decides the size
    widths = [int(n) for n in _FORMAT_NUMBER.findall(value)] if isinstance(value, str) else []
    stars = [_int(a) for a in args] if isinstance(value, str) and "*" in value else []
    return (
        size_of(value)
        + sum(size_of(a) for a in (*args, *kwargs.values()))
        + max([0, *widths, *stars])
    )


def _indent_size(value: Any, width: Any = 4, *_: Any, **kwargs: Any) -> int:
    width = kwargs.get("width", width)
    each = len(width) if isinstance(width, str) else _int(width)
    return size_of(value) + _lines(value) * each


def _wordwrap_size(value: Any, width: Any = 79, *args: Any, **kwargs: Any) -> int:
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None) or "\n"
    per_line: int = max(_int(kwargs.get("width", width)), 1)
    return size_of(value) + (size_of(value) // per_line + 1) * len(str(wrapstring))


def _tojson_size(value: Any, indent: Any = None, **kwargs: Any) -> int:
    indent = kwargs.get("indent", indent)
    return size_of(value) * (1 + _int(indent))


# Jinja's built-in filters that can build much more than they are given: name -> estimate
_FILTER_ESTIMATES: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80, *_, **kw: _int(kw.get("width", width)),
    "format": _format_size,
    "indent": _indent_size,
    "join": lambda value, d="", *_, **kw: _joined_size(value, kw.get("d", d)),
    "replace": lambda value, old="", new="", count=None, **_: _replaced_size(
        str(value), old, new, count
    ),
    "wordwrap": _wordwrap_size,
    "batch": lambda value, linecount=1, *_, **kw: _int(kw.get("linecount", linecount)),
    "slice": lambda value, slices=1, *_, **kw: _int(kw.get("slices", slices)),
    "tojson": _tojson_size,
    # not amplifying, but slow (a regex per word): 1,000,000 characters take ~2 s of CPU
    "urlize": lambda value, *_, **__: size_of(value) * 10,
}


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    estimate = _FILTER_ESTIMATES.get(name)

    @wraps(func)  # keeps Jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if estimate is not None:
            # pass_* filters get the context or environment first; the value follows it
            skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
            if name == "join" and len(args) > skip:
                args = (*args[:skip], _materialized(args[skip]), *args[skip + 1 :])
            _refuse_over(estimate(*args[skip:], **kwargs), f"the {name} filter")
        return checked_size(func(*args, **kwargs))

    return guarded


def guard_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Return ``filters`` with each one checked: amplifying ones before they run (with the
    estimates above), all of them on the size of their result; plus ``loop_guard``."""
    guarded = {name: _guarded_filter(name, func) for name, func in filters.items()}
    guarded[LOOP_GUARD] = loop_guard
    guarded[VALUE_GUARD] = checked_size
    return guarded
