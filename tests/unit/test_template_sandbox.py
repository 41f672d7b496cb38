"""The template sandbox: checks at save time, rendering, the compile cache, the text part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from guestcomms.errors import TemplateError
from guestcomms.templates import limits
from guestcomms.templates.sandbox import (
    CONTACT_FIELDS,
    RenderedContent,
    TemplateRenderer,
    TemplateRenderError,
    build_context,
    html_to_text,
    validate_template,
)

GUEST = {
    "first_name": "Ada",
    "last_name": "Byron",
    "email": "ada@example.com",
    "phone": None,
    "timezone": "Europe/London",
    "locale": "en-GB",
    "attributes": {"rsvp": "yes", "table": 4},
    "tags": ["family"],
}


def validate(
    *,
    subject: str | None = "Hello",
    html: str | None = None,
    text: str | None = "Hi",
    variables: Sequence[str] = (),
) -> None:
    validate_template(subject=subject, html=html, text=text, variables=variables)


def save_error(**parts: Any) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        validate(**parts)
    return caught.value


def render(
    *,
    subject: str | None = "Hello",
    html: str | None = None,
    text: str | None = None,
    contact: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
) -> RenderedContent:
    context = build_context(contact=contact or GUEST, variables=variables or {})
    return TemplateRenderer().render(
        key="v1", subject=subject, html=html, text=text, context=context
    )


# --- validation at save time ------------------------------------------------------------------


def test_syntax_error_names_the_part_and_line() -> None:
    """A syntax error reports the part it is in and the line Jinja found it on."""
    error = save_error(html="<p>Hi</p>\n<p>{% if first_name %}</p>\n")

    assert error.field == "html"
    assert error.line == 2
    assert "line 2 of html" in str(error)


def test_syntax_error_in_subject_names_the_subject() -> None:
    """A syntax error in the subject is reported against the subject, not the body."""
    error = save_error(subject="Hi {{ first_name ")

    assert error.field == "subject"
    assert error.line == 1


def test_unknown_variable_is_named_with_its_line() -> None:
    """A misspelt variable is reported by name, with the line and part it appears on."""
    html = "<p>Dear {{ first_name }},</p>\n<p>We are delighted</p>\n<p>{{ guest_nam }}</p>"
    error = save_error(html=html, variables=["guest_name"])

    assert error.field == "html"
    assert error.line == 3
    assert "'guest_nam'" in str(error)
    assert "line 3 of html" in str(error)


def test_unknown_variable_line_skips_uses_bound_by_the_template() -> None:
    """The reported line is where the name is free, not where a loop bound the same name."""
    html = "{% for item in items %}\n{{ item }}\n{% endfor %}\n{{ item }}"
    error = save_error(html=html, variables=["items"])

    assert error.line == 4


def test_loop_variables_and_set_are_not_unknown() -> None:
    """Names bound by for, set, macros and call blocks are not reported as unknown."""
    html = (
        "{% set greeting = 'Dear ' ~ first_name %}{{ greeting }}\n"
        "{% for guest in guests %}{{ loop.index }}. {{ guest }}{% endfor %}\n"
        "{% for key, value in attributes.items() %}{{ key }}={{ value }}{% endfor %}\n"
        "{% macro seat(n, label='Table') %}{{ label }} {{ n }}{{ caller() }}{% endmacro %}\n"
        "{% call seat(attributes.table) %}!{% endcall %}\n"
        "{% with venue = 'Barn' %}{{ venue }}{% endwith %}\n"
        "{% set ns = namespace(count=0) %}{% set ns.count = 1 %}{{ ns.count }}\n"
        "{{ range(3) | list }}"
    )
    validate(html=html, variables=["guests"])


def test_declared_variables_are_accepted() -> None:
    """A variable listed in "variables" may be used in every part."""
    validate(
        subject="{{ event_name }}",
        html="<p>{{ event_name }} at {{ venue }}</p>",
        text="{{ venue }}",
        variables=["event_name", "venue"],
    )


def test_contact_fields_are_accepted() -> None:
    """Every contact field may be used without being declared."""
    body = " ".join(f"{{{{ {name} }}}}" for name in sorted(CONTACT_FIELDS))
    validate(html=body, text=body + " {{ contact.email }} {{ attributes.rsvp }}")


def test_missing_subject_is_rejected() -> None:
    """An email template without a subject is refused, naming the subject."""
    error = save_error(subject=None)

    assert error.field == "subject"


def test_blank_subject_is_rejected() -> None:
    """A subject of only whitespace counts as missing."""
    assert save_error(subject="  \n").field == "subject"


def test_email_needs_a_body() -> None:
    """An email template with neither html nor text is refused."""
    assert save_error(html=None, text=None).field == "html"


def test_html_only_email_is_accepted() -> None:
    """An email may have only an html part: the text part is derived."""
    validate(html="<p>Hi {{ first_name }}</p>", text=None)


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        (["first_name"], "hide the contact field"),
        (["guest-name"], "not a valid variable name"),
        (["1st"], "not a valid variable name"),
        (["for"], "reserved"),
        (["loop"], "reserved"),
        (["range"], "reserved"),
        (["venue", "venue"], "declared twice"),
        ("venue", "list of names"),
    ],
)
def test_bad_declared_variables_are_rejected(variables: Sequence[str], fragment: str) -> None:
    """Declared names must be identifiers, not reserved, not contact fields, and unique."""
    error = save_error(variables=variables)

    assert error.field == "variables"
    assert fragment in str(error)


def test_dunder_access_is_rejected_at_save() -> None:
    """Reaching for ``__class__`` and friends is refused when the template is saved."""
    error = save_error(html="<p>ok</p>\n{{ ''.__class__.__mro__ }}")

    assert error.field == "html"
    assert error.line == 2
    assert "underscore" in str(error)


@pytest.mark.parametrize(
    "source",
    ["{{ attributes['_secret'] }}", "{{ contact | attr('__class__') }}"],
)
def test_underscore_lookups_by_item_or_attr_filter_are_rejected(source: str) -> None:
    """Underscore names are refused whether reached by ``[...]`` or the attr filter."""
    assert "underscore" in str(save_error(text=source))


def test_unknown_filter_inside_if_is_rejected() -> None:
    """An unknown filter is caught at save even where Jinja would defer it to render time."""
    error = save_error(text="ok\n{% if first_name %}{{ first_name | shout }}{% endif %}")

    assert error.field == "text"
    assert error.line == 2
    assert "'shout'" in str(error)


def test_include_is_rejected() -> None:
    """Templates cannot include others: there is no loader, so it could only fail later."""
    assert "include" in str(save_error(text="{% include 'footer.html' %}"))


def test_name_set_only_inside_if_is_reported() -> None:
    """A name set on only one branch is reported with a message about the branch."""
    error = save_error(text="{% if first_name %}{% set who = first_name %}{% endif %}\n{{ who }}")

    assert error.line == 2
    assert "not set on every path" in str(error)


# --- rendering --------------------------------------------------------------------------------


def test_html_is_autoescaped_but_text_and_subject_are_not() -> None:
    """A hostile first name is escaped in html and left as written in the subject and text."""
    contact = {**GUEST, "first_name": "<script>alert(1)</script>"}
    result = render(
        subject="For {{ first_name }}",
        html="<p>{{ first_name }}</p>",
        text="Dear {{ first_name }}",
        contact=contact,
    )

    assert result.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert result.text == "Dear <script>alert(1)</script>"
    assert result.subject == "For <script>alert(1)</script>"


def test_subject_line_breaks_are_collapsed() -> None:
    """A subject never contains a line break, whatever the template or the data hold."""
    result = render(
        subject="  Hello\r\n{{ first_name }}\n",
        text="x",
        contact={**GUEST, "first_name": "Ada\rEvil: header"},
    )

    assert result.subject == "Hello Ada Evil: header"


def test_text_part_is_derived_from_html() -> None:
    """Without a text part, the text has paragraph breaks, link URLs, and no script or style."""
    html = (
        "<html><head><style>p { color: red }</style></head><body>"
        "<h1>Dear {{ first_name }}</h1>"
        "<p>The ceremony starts at 3&nbsp;pm &amp; dinner follows.</p>"
        "<p>Please <a href='https://example.com/rsvp?g=1&amp;x=2'>reply here</a>.<br>Thanks</p>"
        "<script>track()</script>"
        "<ul><li>Shoes</li><li>Umbrella</li></ul>"
        "</body></html>"
    )
    result = render(html=html)

    assert result.text == (
        "Dear Ada\n\n"
        "The ceremony starts at 3 pm & dinner follows.\n\n"
        "Please reply here (https://example.com/rsvp?g=1&x=2).\nThanks\n\n"
        "- Shoes\n- Umbrella"
    )


def test_derived_text_does_not_repeat_a_link_that_shows_its_address() -> None:
    """A link whose text is its own address, or a mailto: of it, is not followed by the URL."""
    html = (
        "<p><a href='https://ex.com'>https://ex.com</a> "
        "<a href='mailto:ada@example.com'>ada@example.com</a> <a href='https://ex.com/x'></a></p>"
    )

    assert html_to_text(html) == "https://ex.com ada@example.com https://ex.com/x"


def test_explicit_text_part_is_used_as_is() -> None:
    """When a text part exists, it is rendered rather than derived from the html."""
    result = render(html="<p>HTML {{ first_name }}</p>", text="TEXT {{ first_name }}")

    assert result.text == "TEXT Ada"


def test_dunder_access_fails_at_render() -> None:
    """Even if an unchecked template reaches the renderer, the sandbox refuses ``__class__``."""
    with pytest.raises(TemplateRenderError) as caught:
        render(text="{{ ''.__class__.__mro__ }}")

    assert caught.value.field == "text"


def test_missing_declared_variable_fails_naming_the_part() -> None:
    """StrictUndefined: a declared variable with no value fails the render, naming the part."""
    with pytest.raises(TemplateRenderError) as caught:
        render(subject="Hi", html="<p>{{ venue }}</p>", variables={})

    assert caught.value.field == "html"
    assert "html" in str(caught.value)
    assert "venue" in str(caught.value)


def test_none_renders_as_empty() -> None:
    """A contact field that is None renders as nothing, never as the word "None"."""
    assert render(text="[{{ phone }}]").text == "[]"


def test_templates_cannot_mutate_shared_variables() -> None:
    """A campaign's variables are shared between guests, so templates cannot modify them."""
    shared: list[str] = ["a"]
    with pytest.raises(TemplateRenderError):
        render(text="{{ items.append('b') }}", variables={"items": shared})

    assert shared == ["a"]


def test_huge_repetition_is_refused() -> None:
    """A template cannot allocate an enormous string with ``*``."""
    with pytest.raises(TemplateRenderError):
        render(text="{{ 'x' * 1000000000 }}")


# --- the compile cache ------------------------------------------------------------------------


def test_same_key_compiles_once() -> None:
    """Rendering one version twice compiles it once and renders each guest's values."""
    renderer = TemplateRenderer()
    parts: dict[str, Any] = {"subject": "Hi {{ first_name }}", "html": "<b>x</b>", "text": None}

    first = renderer.render(key="v1", **parts, context=build_context(contact=GUEST, variables={}))
    second = renderer.render(
        key="v1",
        **parts,
        context=build_context(contact={**GUEST, "first_name": "Bea"}, variables={}),
    )

    assert renderer.compilations == 1
    assert len(renderer) == 1
    assert (first.subject, second.subject) == ("Hi Ada", "Hi Bea")


def test_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    """Past its size the cache drops the version used longest ago, keeping recent ones."""
    renderer = TemplateRenderer(max_entries=2)
    context = build_context(contact=GUEST, variables={})
    for key in ["a", "b", "a", "c"]:
        renderer.render(key=key, subject=key, html=None, text=key, context=context)
    assert len(renderer) == 2
    assert renderer.compilations == 3

    renderer.render(key="a", subject="a", html=None, text="a", context=context)
    assert renderer.compilations == 3  # "a" was kept: it was used after "b"


def test_build_context_exposes_contact_fields_and_variables() -> None:
    """Contact fields are top level and under ``contact``; variables are layered on top."""
    context = build_context(
        contact={"first_name": "Ada", "last_name": None, "attributes": {"rsvp": "yes"}},
        variables={"venue": "Barn"},
    )

    assert context["full_name"] == "Ada"
    assert context["contact"]["first_name"] == "Ada"
    assert context["attributes"] == {"rsvp": "yes"}
    assert context["tags"] == []
    assert context["venue"] == "Barn"
    assert "venue" not in context["contact"]


# --- escape payloads --------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ '{0.__class__}'.format(first_name) }}",
    "{{ '{x.__class__}'.format_map({'x': first_name}) }}",
    "{{ '{0.__class__}' | attr('format')(first_name) }}",
    "{{ first_name | attr('format_map')({}) }}",
    "{{ attributes | attr('__class__') }}",
    "{{ range.__globals__ }}",
    "{{ tags.mro() }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_payloads_are_refused_at_save(source: str) -> None:
    """Each known Jinja2 escape is refused when the template is saved, naming the part."""
    assert save_error(text=source).field == "text"


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_payloads_fail_at_render(source: str) -> None:
    """And if one reached the renderer unchecked, the sandbox refuses it there too."""
    with pytest.raises(TemplateRenderError):
        render(text=source)


def test_format_is_refused_with_a_pointer_to_the_filter() -> None:
    """str.format is refused at save, and the message says what to use instead."""
    assert "format filter" in str(save_error(text="{{ '{}'.format(first_name) }}"))


def test_format_key_of_a_dict_stays_readable_by_item() -> None:
    """Refusing the ``format`` attribute does not stop reading a dict key of that name."""
    validate(text="{{ options['format'] }}", variables=["options"])
    assert render(text="{{ options['format'] }}", variables={"options": {"format": "A4"}}).text == (
        "A4"
    )


@pytest.mark.parametrize(
    "subject", ["Hi\r\nBcc: x@evil.example", "Hi\nthere", "Hi\x00", "a\u2028b"]
)
def test_subject_source_with_a_line_break_is_refused(subject: str) -> None:
    """A subject's source must be one line: a break there could only start another header."""
    error = save_error(subject=subject)

    assert error.field == "subject"
    assert "line breaks" in str(error)


def test_control_characters_from_data_become_spaces_in_the_subject() -> None:
    """A value rendered into the subject cannot bring a line break or control character."""
    contact = {**GUEST, "first_name": "Ada\r\nBcc: x@evil.example\x00\x1b"}

    assert render(subject="Hi {{ first_name }}", contact=contact).subject == (
        "Hi Ada Bcc: x@evil.example"
    )


# --- resource limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
        ("{{ 'x' * 10**9 }}", "larger than"),
        ("{{ ['x' * 100000] * 100 }}", "larger than"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "loop steps",
        ),
        ("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", "rendered more than"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested too deeply"),
        ("{{ 'x' | center(10**9) }}", "center filter"),
        ("{{ '%999999999s' | format(1) }}", "format filter"),
        ("{{ 'x'.ljust(10**9) }}", "str.ljust"),
        ("{{ ('x' * 100000) | replace('', 'y' * 100000) }}", "replace filter"),
        ("{{ range(100000) | join('x' * 100000) }}", "join filter"),
        ("{{ ('x' * 100000).join(range(100000) | map('string')) }}", "str.join"),
        ("{{ ('x\n' * 100000) | indent('y' * 100000) }}", "indent filter"),
        ("{{ [1] | batch(10**9, 'x') | list }}", "batch filter"),
        ("{{ range(10000) | list | tojson(indent=100000) }}", "tojson filter"),
        ("{{ ((10**1000)**1000)**1000 }}", "power"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "larger than",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "larger than",
        ),
    ],
)
def test_runaway_renders_are_stopped(source: str, fragment: str) -> None:
    """Loops, repetition, padding filters and doubling are stopped with a render error."""
    with pytest.raises(TemplateRenderError) as caught:
        render(text=source)

    assert fragment in str(caught.value)


def test_cpu_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its CPU budget a render stops at the next check (a budget of none here, so the
    second check, after 2 * CHECK_EVERY steps, ends it)."""
    monkeypatch.setattr(limits, "MAX_RENDER_CPU_SECONDS", -1.0)

    with pytest.raises(TemplateRenderError) as caught:
        render(text=f"{{% for i in range({3 * limits.CHECK_EVERY}) %}}{{% endfor %}}")

    assert "CPU" in str(caught.value)


def test_slow_steps_are_bounded_by_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few slow operations on large values (far fewer than CHECK_EVERY steps) are still
    stopped by the CPU budget: each one checks the clock."""
    monkeypatch.setattr(limits, "MAX_RENDER_CPU_SECONDS", 0.1)

    with pytest.raises(TemplateRenderError) as caught:
        render(text="{% for i in range(500) %}{{ ('ab ' * 300000) | title | length }}{% endfor %}")

    assert "CPU" in str(caught.value)


def test_each_render_gets_a_fresh_budget() -> None:
    """The step budget is per render: many renders of a big-but-allowed loop all succeed."""
    renderer = TemplateRenderer()
    source = "{% for i in range(100000) %}{% endfor %}{% for i in range(100000) %}{% endfor %}ok"
    context = build_context(contact=GUEST, variables={})
    for _ in range(12):  # 12 * 200,000 steps: past MAX_STEPS if the budget were shared
        assert renderer.render(key="v", subject="s", html=None, text=source, context=context).text
    assert limits.MAX_STEPS < 12 * 200_000


def test_ordinary_loops_and_operators_still_work() -> None:
    """The guards change nothing for a normal template: loop helpers, ~, +, filters."""
    text = (
        "{% for t in tags %}{{ loop.index }}/{{ loop.length }}{{ '' if loop.last else ',' }}"
        "{% endfor %} {{ first_name ~ '!' }} {{ 1 + 2 }} {{ [1] + [2] }} {{ 'ab' * 2 }} "
        "{{ 2 ** 10 }} {{ 'x' | center(5) }}| {{ '%05.1f' | format(3.14159) }} "
        "{{ tags | join(', ') }} {{ ', '.join(['a', 'b']) }} {{ dict(a=1).a }}"
    )
    result = render(text=text, contact={**GUEST, "tags": ["a", "b"]})

    assert result.text == "1/2,2/2 Ada! 3 [1, 2] abab 1024   x  | 003.1 a, b a, b 1"


def test_recursive_loop_and_namespace_still_work() -> None:
    """A recursive loop and a namespace counter render as before."""
    text = (
        "{% set ns = namespace(n=0) %}"
        "{% for item in tree recursive %}{{ item.name }}{% set ns.n = ns.n + 1 %}"
        "{% if item.children %}({{ loop(item.children) }}){% endif %}{% endfor %} {{ ns.n }}"
    )
    tree = [
        {"name": "a", "children": [{"name": "b", "children": []}]},
        {"name": "c", "children": []},
    ]

    assert render(text=text, variables={"tree": tree}).text == "a(b)c 3"
