"""The plain fast path of notifications.templates (text and bare `{{ name }}`s) renders
exactly what jinja renders, errors included; anything else still goes to jinja."""
from __future__ import annotations

import itertools
from decimal import Decimal
from types import MappingProxyType

import pytest
from jinja2 import StrictUndefined
from markupsafe import Markup

from notifications import templates as t
from notifications.templates import DEFAULT_TEMPLATES, SAMPLE_CONTEXT, TemplateError


class Loud:
    def __str__(self):
        raise ValueError("no text for you")


class Html:
    def __html__(self):
        return "<u>{safe}</u>"

    def __str__(self):
        return "<str>"


HOSTILE = ["<script>alert('x')</script>", "Анна & Co", "{{ x }}", "{% if x %}", "}}{{", "",
           None, 0, 17, -3, 1.5, Decimal("1250.50"), True, "'\"`", Markup("<i>ok</i>"),
           "a" * (t.MAX_OUTPUT_CHARS // 3), "b" * (t.MAX_OUTPUT_CHARS + 1), Loud(), Html(),
           "\n  спасибо  \n", StrictUndefined(name="first_name")]

CUSTOM = ["", "text only", "{{ first_name }}\n", "{{ first_name }}\n\n", "  {{- first_name -}}  !",
          "{# a comment #}{{ first_name }}{{ first_name }}", "{{ first_name }}{{ balance }}",
          "<p>{{ first_name }} &amp; {{ tier }}</p>", "{{ first_name|upper }}", "{{ 'const' }}",
          "{% if first_name %}{{ first_name }}{% endif %}", "{{ first_name ~ tier }}",
          "{{ first_name }}" * 4]


def _sources():
    for template in DEFAULT_TEMPLATES.values():
        yield template.body, template.kind
        if template.subject is not None:
            yield template.subject, "text"
    for source, kind in itertools.product(CUSTOM, ("html", "text")):
        yield source, kind


def _outcome(source, context, kind):
    try:
        return "ok", t.render(source, context, kind=kind)
    except TemplateError as exc:
        return "error", exc.placeholder, exc.message


def _slow(source, context, kind):
    """jinja itself: the fast path takes plain dicts only."""
    return _outcome(source, MappingProxyType(context), kind)


def test_every_default_template_takes_the_fast_path():
    for source, kind in _sources():
        if source in CUSTOM:
            continue
        assert t._compile(source, kind)[2] is not None, source


@pytest.mark.parametrize("source", ["{{ first_name|upper }}", "{{ 'const' }}",
                                    "{% if first_name %}x{% endif %}", "{{ first_name ~ tier }}"])
def test_anything_but_text_and_names_goes_to_jinja(source):
    assert t._compile(source, "text")[2] is None


def test_same_output_and_errors_as_jinja_for_hostile_values():
    compared = 0
    for (source, kind), value in itertools.product(_sources(), HOSTILE):
        for name in ("first_name", "balance"):
            context = {**SAMPLE_CONTEXT, name: value}
            fast = _outcome(source, context, kind)
            assert fast == _slow(source, context, kind), (source, kind, value)
            assert type(fast[-1]) is str
            compared += 1
    assert compared > 1000


def test_same_errors_for_a_missing_name_and_a_key_that_is_not_text():
    for source, kind in _sources():
        lacking = {k: v for k, v in SAMPLE_CONTEXT.items() if k != "first_name"}
        assert _outcome(source, lacking, kind) == _slow(source, lacking, kind)
        odd = {**SAMPLE_CONTEXT, 1: "one"}
        assert _outcome(source, odd, kind) == _slow(source, odd, kind)


def test_render_notice_unchanged():
    for name, template in DEFAULT_TEMPLATES.items():
        for value in HOSTILE[:12]:
            context = {**SAMPLE_CONTEXT, "first_name": value, "tier": value}
            fast = t.render_notice(template, context)
            slow_body = t.render(template.body, MappingProxyType(context), kind=template.kind)
            assert fast.body == slow_body.strip()
