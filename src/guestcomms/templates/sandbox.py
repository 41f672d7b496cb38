"""The template engine: a Jinja2 sandbox, checks at save time, and a cache of compiled versions.

Two sandboxed environments share one configuration: ``html_env`` autoescapes (the html part)
and ``text_env`` does not (the subject and the text part). Both use ``StrictUndefined``, so a
missing value fails loudly instead of sending "Dear ," to a guest.

* ``validate_template`` is called when a template version is saved. It compiles every part
  and rejects syntax errors, unknown variables, unknown filters, includes and
  underscore attributes, so mistakes surface in the API response rather than when the
  10,000th email renders. It raises ``TemplateError`` naming the part and the line.
* ``TemplateRenderer`` is used by the worker on the hot path. It compiles each version once
  (an LRU keyed by the version id) and renders it per recipient, deriving the text part
  from the rendered HTML when the version has none. It raises ``TemplateRenderError``.
* ``build_context`` turns a contact and the message's variables into the render context.
"""

from __future__ import annotations

import keyword
import re
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from babel import Locale
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from guestcomms.errors import GuestcommsError, TemplateError
from guestcomms.templates import limits
from guestcomms.templates.i18n import FILTERS as LOCALE_FILTERS
from guestcomms.templates.i18n import RENDER_LOCALE

__all__ = [
    "CONTACT_FIELDS",
    "EVENT_FIELDS",
    "RenderedContent",
    "TemplateRenderError",
    "TemplateRenderer",
    "build_context",
    "html_env",
    "html_to_text",
    "make_environment",
    "text_env",
    "validate_template",
]

CONTACT_FIELDS: frozenset[str] = frozenset(
    {
        "first_name",
        "last_name",
        "full_name",
        "email",
        "phone",
        "timezone",
        "locale",
        "attributes",
        "tags",
        "contact",
    }
)
# Built-in when the message belongs to an event (events/context.py says what they hold).
EVENT_FIELDS: frozenset[str] = frozenset({"event", "guest"})

# Bounds on what one render may compute live in templates.limits; the sandbox caps range()
# at 100,000 items, and this stops `9 ** 9 ** 9`.
MAX_EXPONENT = 1_000

DEFAULT_CACHE_SIZE = 1024  # compiled template versions kept per renderer

# Names Jinja gives meaning to inside templates; a declared variable with one of these names
# could never be read, so it is refused when the version is saved.
_JINJA_RESERVED = frozenset(
    {"true", "false", "none", "loop", "self", "caller", "varargs", "kwargs"}
)
_MACRO_NAMES = frozenset({"caller", "varargs", "kwargs"})
# What a subject's source may not contain: CR, LF, the other control characters (tab
# aside) and the line separators str.splitlines() breaks on.
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# Attributes no template may read, beyond anything starting with an underscore: str.format
# and format_map reach attributes by name inside the format string ("{0.__class__}"), the
# rest lead to code objects, frames and globals.
UNSAFE_ATTRIBUTES = frozenset(
    {
        "format",
        "format_map",
        "mro",
        "func_globals",
        "func_code",
        "func_closure",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "tb_frame",
        "im_func",
        "im_self",
    }
)


class TemplateRenderError(GuestcommsError):
    """The template could not be rendered for this recipient."""

    status = 422
    slug = "template-render-error"
    title = "Template render failed"


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with bounded operators, calls, loops and attribute access.

    Immutable, because a campaign shares one variables mapping between all its recipients: a
    template calling ``items.append(...)`` must not change what the next guest sees. Every
    template it parses has its loops and ``~`` guarded (``limits.guard_loops``).
    """

    intercepted_binops = frozenset({"*", "**", "+"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return limits.guard_loops(super()._parse(source, name, filename))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_") or attr in UNSAFE_ATTRIBUTES:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja hands out a sandboxed str.format before asking is_safe_attribute; we refuse
        # format and format_map outright (UNSAFE_ATTRIBUTES), so there is nothing to wrap.
        return None

    def call(
        __self,  # noqa: N805 (Jinja's signature: the prefixes keep kwargs free)
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        limits.step()
        args = limits.check_call(__obj, args, kwargs)
        return limits.checked_size(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits.check_binop(operator, left, right)
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        result = super().call_binop(context, operator, left, right)
        return limits.checked_size(result) if operator == "+" else result


def _finalize(value: Any) -> Any:
    # A contact without a phone must not read "None" in an email.
    return "" if value is None else value


def make_environment(*, autoescape: bool) -> SandboxedEnvironment:
    """Return a new sandboxed Jinja2 environment with our settings (no loader: no includes)
    and the Babel filters of ``templates.i18n`` (``format_date``, ``format_currency``...)."""
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        finalize=_finalize,
        # Block tags on their own line leave no blank line behind: text emails and SMS read
        # as written. Line numbers in errors are unaffected.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(LOCALE_FILTERS)
    env.filters = limits.guard_filters(env.filters)
    # lipsum(n) builds n paragraphs of filler text: no use in a real message, and unbounded
    env.globals.pop("lipsum", None)
    return env


# Built at import: pure configuration, no I/O, and sharing them lets Jinja share its caches.
html_env = make_environment(autoescape=True)
text_env = make_environment(autoescape=False)

# range, dict, cycler, joiner, namespace: the same in both environments
_RENDER_GLOBALS: dict[str, Any] = dict(text_env.globals)

_PARTS: tuple[tuple[str, SandboxedEnvironment], ...] = (
    ("subject", text_env),
    ("html", html_env),
    ("text", text_env),
)


# --- validation at save time ------------------------------------------------------------------


def validate_template(
    *,
    subject: str | None,
    html: str | None,
    text: str | None,
    variables: Sequence[str],
    channel: str = "email",
) -> None:
    """Check a template version before it is saved.

    Raises ``TemplateError`` with ``field`` set to ``"subject"``, ``"html"``, ``"text"`` or
    ``"variables"`` and ``line`` set when the problem is on a line of a part.
    """
    declared = _check_declared(variables)
    sources = {"subject": subject, "html": html, "text": text}
    _check_required(sources, channel=channel)
    if subject is not None and _LINE_BREAKS.search(subject):
        # the rendered subject is collapsed to one line anyway; a break in the source is
        # a mistake (or an attempt at a second header), so it is refused where it is made
        raise TemplateError(
            "the subject must be one line: line breaks and control characters are not allowed",
            field="subject",
        )
    allowed = CONTACT_FIELDS | EVENT_FIELDS | declared
    for part, env in _PARTS:
        source = sources[part]
        if source is not None:
            _check_part(part=part, source=source, env=env, allowed=allowed)


def _check_declared(variables: Sequence[str]) -> frozenset[str]:
    if isinstance(variables, str):
        # A bare string is a Sequence[str] too; iterating it would declare each letter.
        raise TemplateError('"variables" must be a list of names', field="variables")
    seen: set[str] = set()
    for name in variables:
        if not isinstance(name, str) or not name.isidentifier():
            raise TemplateError(f"{name!r} is not a valid variable name", field="variables")
        if keyword.iskeyword(name) or name in _JINJA_RESERVED or name in text_env.globals:
            raise TemplateError(f"{name!r} is a reserved name", field="variables")
        if name in CONTACT_FIELDS:
            raise TemplateError(
                f"variable {name!r} would hide the contact field of the same name",
                field="variables",
            )
        if name in EVENT_FIELDS:
            raise TemplateError(
                f"{name!r} is built in for messages about an event", field="variables"
            )
        if name in seen:
            raise TemplateError(f"variable {name!r} is declared twice", field="variables")
        seen.add(name)
    return frozenset(seen)


def _check_required(sources: Mapping[str, str | None], *, channel: str) -> None:
    present = {part for part, source in sources.items() if source is not None and source.strip()}
    if channel == "email":
        if "subject" not in present:
            raise TemplateError("an email template needs a subject", field="subject")
        if not present & {"html", "text"}:
            raise TemplateError(
                "an email template needs an html part, a text part or both", field="html"
            )
    elif not present:
        raise TemplateError("a template needs some content", field="text")


def _check_part(
    *, part: str, source: str, env: SandboxedEnvironment, allowed: frozenset[str]
) -> None:
    try:
        ast = env.parse(source)
        # Compiling also catches what parsing does not, e.g. an unknown filter.
        env.compile(ast)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error on line {exc.lineno} of {part}: {exc.message}",
            field=part,
            line=exc.lineno,
        ) from exc
    _check_nodes(ast, part=part, env=env)
    unknown = meta.find_undeclared_variables(ast) - allowed
    if unknown:
        _raise_unknown(ast, part=part, unknown=unknown)


def _check_nodes(ast: nodes.Template, *, part: str, env: SandboxedEnvironment) -> None:
    for node in ast.find_all(
        (
            nodes.Extends,
            nodes.Include,
            nodes.Import,
            nodes.FromImport,
            nodes.Getattr,
            nodes.Getitem,
            nodes.Filter,
            nodes.Test,
        )
    ):
        line = node.lineno
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            raise TemplateError(
                f"line {line} of {part}: a template cannot extend, include or import another",
                field=part,
                line=line,
            )
        name = _underscore_name(node)
        if name is not None:
            raise TemplateError(
                f"line {line} of {part}: {name!r} starts with an underscore, "
                "and such attributes are not available in templates",
                field=part,
                line=line,
            )
        name = _unsafe_attribute(node)
        if name is not None:
            raise TemplateError(
                f"line {line} of {part}: the attribute {name!r} is not available in templates"
                + (" (use the format filter)" if name.startswith("format") else ""),
                field=part,
                line=line,
            )
        # Compilation only checks filters and tests outside {% if %} blocks; check them all.
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            raise TemplateError(
                f"unknown filter {node.name!r} on line {line} of {part}", field=part, line=line
            )
        if isinstance(node, nodes.Test) and node.name not in env.tests:
            raise TemplateError(
                f"unknown test {node.name!r} on line {line} of {part}", field=part, line=line
            )


def _underscore_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        name: object = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        first = node.args[0]
        name = first.value if isinstance(first, nodes.Const) else None
    else:
        return None
    return name if isinstance(name, str) and name.startswith("_") else None


def _unsafe_attribute(node: nodes.Node) -> str | None:
    # x.format and x|attr('format'); x['format'] is an item lookup and stays allowed
    if isinstance(node, nodes.Getattr):
        name: object = node.attr
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        first = node.args[0]
        name = first.value if isinstance(first, nodes.Const) else None
    else:
        return None
    return name if isinstance(name, str) and name in UNSAFE_ATTRIBUTES else None


def _raise_unknown(ast: nodes.Template, *, part: str, unknown: Iterable[str]) -> None:
    free: dict[str, int] = {}
    _FreeNames(free).visit_body(ast.body, frozenset())
    located = sorted((free.get(name, _first_load(ast, name)), name) for name in unknown)
    line, name = located[0]
    if name in free:
        message = (
            f"unknown variable {name!r} on line {line} of {part}; "
            'declare it in "variables" or use a contact field'
        )
    else:
        # Jinja found the name unset on some path, e.g. {% set %} only inside an {% if %}.
        message = (
            f"variable {name!r} on line {line} of {part} is not set on every path before it "
            'is used; set it unconditionally or declare it in "variables"'
        )
    raise TemplateError(message, field=part, line=line)


def _first_load(ast: nodes.Template, name: str) -> int:
    lines = [n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines, default=1)


def _stored_names(target: nodes.Node) -> set[str]:
    names = {n.name for n in target.find_all(nodes.Name) if n.ctx in {"store", "param"}}
    if isinstance(target, nodes.Name):
        names.add(target.name)
    return names


class _FreeNames:
    """Finds the first line where each name is read without being bound by the template.

    Jinja's ``meta`` says *which* names are free but not *where*; this walk follows the
    scopes that matter for that (loops, macros, call blocks, with, set) to find the line.
    """

    def __init__(self, found: dict[str, int]) -> None:
        self.found = found

    def visit_body(self, body: Sequence[nodes.Node], bound: frozenset[str]) -> None:
        for statement in body:
            self.visit(statement, bound)
            bound = bound | self._binds(statement)

    def _binds(self, statement: nodes.Node) -> set[str]:
        if isinstance(statement, nodes.Assign | nodes.AssignBlock):
            return _stored_names(statement.target)
        if isinstance(statement, nodes.Macro):
            return {statement.name}
        if isinstance(statement, nodes.If):
            # {% if %} opens no scope: what a branch sets is visible after it.
            names: set[str] = set()
            for child in (*statement.body, *statement.elif_, *statement.else_):
                names |= self._binds(child)
            return names
        return set()

    def visit(self, node: nodes.Node, bound: frozenset[str]) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name not in bound:
                line = self.found.get(node.name, node.lineno)
                self.found[node.name] = min(line, node.lineno)
        elif isinstance(node, nodes.For):
            self.visit(node.iter, bound)
            inner = bound | _stored_names(node.target) | {"loop"}
            if node.test is not None:
                self.visit(node.test, inner)
            self.visit_body(node.body, inner)
            self.visit_body(node.else_, bound)
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            if isinstance(node, nodes.CallBlock):
                self.visit(node.call, bound)
            for default in node.defaults:
                self.visit(default, bound)
            params = set().union(*(_stored_names(arg) for arg in node.args))
            inner = bound | params | _MACRO_NAMES
            if isinstance(node, nodes.Macro):
                inner |= {node.name}  # a macro may call itself
            self.visit_body(node.body, inner)
        elif isinstance(node, nodes.With):
            for value in node.values:
                self.visit(value, bound)
            targets = set().union(*(_stored_names(t) for t in node.targets))
            self.visit_body(node.body, bound | targets)
        else:
            self._visit_fields(node, bound)

    def _visit_fields(self, node: nodes.Node, bound: frozenset[str]) -> None:
        for field in node.fields:
            value = getattr(node, field, None)
            if isinstance(value, nodes.Node):
                self.visit(value, bound)
            elif isinstance(value, list):
                children = [child for child in value if isinstance(child, nodes.Node)]
                # Statement lists run in order, so a {% set %} binds what follows it.
                self.visit_body(children, bound)


# --- rendering on the hot path ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedContent:
    """The rendered parts of one template version for one recipient."""

    subject: str
    html: str | None
    text: str


class _Compiled:
    """One version's compiled parts, and the last text derived from its rendered HTML."""

    __slots__ = ("html", "last_html", "last_text", "subject", "text")

    def __init__(
        self, *, subject: Template | None, html: Template | None, text: Template | None
    ) -> None:
        self.subject = subject
        self.html = html
        self.text = text
        # Deriving text from HTML costs several times the render itself. An alert or a
        # campaign without personalised HTML renders the same HTML for every guest, so one
        # remembered pair saves that cost there; comparing two equal strings is a memcmp.
        self.last_html: str | None = None
        self.last_text = ""

    def derive_text(self, html: str) -> str:
        if html != self.last_html:
            self.last_text = html_to_text(html)
            self.last_html = html
        return self.last_text


class TemplateRenderer:
    """Renders template versions, compiling each one once.

    Compiled versions are kept in an LRU of ``max_entries`` keys. The key must identify the
    content (the template version id: versions are immutable): on a hit the sources passed
    to ``render`` are not looked at again. Not thread-safe; one per worker event loop.
    """

    def __init__(self, *, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        self._cache: OrderedDict[Hashable, _Compiled] = OrderedDict()
        self._max_entries = max_entries
        self.compilations = 0  # how many versions were compiled; for tests and metrics

    def __len__(self) -> int:
        return len(self._cache)

    def render(
        self,
        *,
        key: Hashable,
        subject: str | None,
        html: str | None,
        text: str | None,
        context: Mapping[str, Any],
        locale: Locale | None = None,
    ) -> RenderedContent:
        """Render every part with ``context``; raise ``TemplateRenderError`` naming the part.

        The subject is stripped and its line breaks turned into spaces. Without a text part,
        the text is derived from the rendered HTML. ``locale`` is the one the Babel filters
        format in (default: the contact's ``locale`` field in the context, else English).
        """
        # One shallow copy of a dozen keys (~1 us) with the sandbox's globals under them,
        # shared by the parts: Jinja would otherwise merge its globals (a ChainMap, slow
        # to iterate) into a copy for every part. The caller's context stays untouched.
        context = {**_RENDER_GLOBALS, **context}
        if locale is not None:
            context[RENDER_LOCALE] = locale
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._compile(subject=subject, html=html, text=text)
            self._cache[key] = compiled
            if len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)

        with limits.budget():  # one step and CPU budget for all the parts
            rendered_subject = _render(compiled.subject, "subject", context)
            rendered_html = (
                None if compiled.html is None else _render(compiled.html, "html", context)
            )
            if compiled.text is not None:
                rendered_text = _render(compiled.text, "text", context)
            else:
                rendered_text = compiled.derive_text(rendered_html) if rendered_html else ""
        return RenderedContent(
            # str.split() with no argument splits on every line break Unicode knows, not
            # only CR and LF; a header must contain none of them, nor a control character.
            subject=" ".join(_LINE_BREAKS.sub(" ", rendered_subject).split()),
            html=rendered_html,
            text=rendered_text,
        )

    def _compile(self, *, subject: str | None, html: str | None, text: str | None) -> _Compiled:
        sources = {"subject": subject, "html": html, "text": text}
        templates: dict[str, Template | None] = {}
        for part, env in _PARTS:
            source = sources[part]
            try:
                templates[part] = None if source is None else env.from_string(source)
            except TemplateSyntaxError as exc:
                raise TemplateRenderError(
                    f"could not compile the {part}: line {exc.lineno}: {exc.message}", field=part
                ) from exc
        self.compilations += 1
        return _Compiled(
            subject=templates["subject"], html=templates["html"], text=templates["text"]
        )


def _render(template: Template | None, part: str, context: dict[str, Any]) -> str:
    if template is None:
        return ""
    try:
        # Template.render, but on the render's shared context (see TemplateRenderer.render)
        # and with the output collected under limits.MAX_OUTPUT_CHARS
        ctx = template.new_context(context, shared=True)
        return limits.collect(template.root_render_func(ctx))
    except RecursionError as exc:
        raise TemplateRenderError(
            f"could not render the {part}: macros nested too deeply", field=part
        ) from exc
    except Exception as exc:  # UndefinedError, SecurityError, or whatever a value raised
        raise TemplateRenderError(f"could not render the {part}: {exc}", field=part) from exc


def build_context(
    *,
    contact: Mapping[str, Any],
    variables: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    guest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the render context: contact fields at top level and as ``contact``, then variables.

    Declared variables are layered last, so a message's variables win over a contact field.
    A message about an event also gets ``event`` and ``guest``; without one, they stay
    undefined and a template using them fails loudly.
    """
    first_name = contact.get("first_name")
    last_name = contact.get("last_name")
    fields: dict[str, Any] = {
        "first_name": first_name,
        "last_name": last_name,
        "full_name": f"{first_name or ''} {last_name or ''}".strip(),
        "email": contact.get("email"),
        "phone": contact.get("phone"),
        "timezone": contact.get("timezone"),
        "locale": contact.get("locale"),
        "attributes": dict(contact.get("attributes") or {}),
        "tags": list(contact.get("tags") or []),
    }
    context = {**fields, "contact": fields, **variables}
    if event is not None:
        context.update(event=event, guest=guest)
    return context


# --- deriving the text part ------------------------------------------------------------------

_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Blocks set apart by a blank line, and blocks that only start a new line.
_PARAGRAPHS = _HEADINGS | {"p", "blockquote", "pre", "ul", "ol", "dl", "table", "hr", "figure"}
_LINES = frozenset(
    {
        "div",
        "li",
        "tr",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "main",
        "address",
        "figcaption",
        "center",
        "form",
        "fieldset",
        "body",
    }
)
_HIDDEN = frozenset({"script", "style", "title", "template"})
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")  # HTML's whitespace; &nbsp; is not collapsed
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Return a plain-text rendering of ``html`` for the text part of an email.

    Scripts and styles are dropped, blocks become lines or paragraphs, list items get a
    ``- `` bullet, links read ``text (url)``, entities are decoded and blank lines collapsed.
    """
    parser = _HtmlToText()
    parser.feed(html)
    parser.close()
    return parser.text()


class _HtmlToText(HTMLParser):
    """Collects text from HTML; newlines are owed (``_pending``) until text follows them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._pending = 0  # newlines owed before the next text, at most 2 (one blank line)
        self._hidden = 0  # depth inside elements whose text is not shown
        self._pre = 0
        self._links: list[tuple[str, int]] = []  # (href, where in _out the link text starts)

    def text(self) -> str:
        joined = "".join(self._out).replace("\xa0", " ")
        lines = "\n".join(line.rstrip() for line in joined.split("\n"))
        return _BLANK_LINES.sub("\n\n", lines).strip("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._pending = min(self._pending + 1, 2)
        elif tag == "li":
            self._owe(1)
            self._emit("- ")
        elif tag == "a":
            href = next((value for name, value in attrs if name == "href"), None) or ""
            self._links.append((href.strip(), len(self._out)))
        elif tag in _PARAGRAPHS:
            self._owe(2)
        elif tag in _LINES:
            self._owe(1)
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(self._hidden - 1, 0)
        elif tag == "a" and self._links:
            self._end_link(*self._links.pop())
        elif tag in _PARAGRAPHS:
            self._owe(2)
        elif tag in _LINES:
            self._owe(1)
        elif tag in {"td", "th"}:
            self._write(" ")
        if tag == "pre":
            self._pre = max(self._pre - 1, 0)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._emit(data)
        else:
            self._write(data)

    def _end_link(self, href: str, start: int) -> None:
        label = "".join(self._out[start:]).strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        if not label:
            self._write(href)
        elif label not in {href, href.partition(":")[2]}:  # not repeated for mailto:/tel:
            self._write(f" ({href})")

    def _owe(self, count: int) -> None:
        self._pending = max(self._pending, count)

    def _write(self, data: str) -> None:
        data = _HTML_SPACE.sub(" ", data)
        if self._pending or not self._out or self._out[-1].endswith("\n"):
            data = data.lstrip(" ")
        elif data.startswith(" ") and self._out[-1].endswith(" "):
            data = data[1:]
        if data:
            self._emit(data)

    def _emit(self, data: str) -> None:
        if self._pending and self._out:
            self._out.append("\n" * self._pending)
        self._pending = 0
        self._out.append(data)
