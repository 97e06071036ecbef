"""Notification templates: sandboxed rendering, error messages, defaults, money format."""
from __future__ import annotations

import pytest

from notifications import templates as t
from notifications.templates import (
    DEFAULT_TEMPLATES, PLACEHOLDERS, SAMPLE_CONTEXT, TemplateError, check, format_bonus,
    render, render_html, render_notice, render_text,
)

NBSP = "\u00a0"


def test_render_with_sample_context():
    text = render_text("{{ first_name }} {{ last_name }}, баланс {{ balance }}", SAMPLE_CONTEXT)
    assert text == f"Анна Петрова, баланс 1{NBSP}250"


def test_html_escapes_values_but_not_the_template():
    html = render_html("<p>Привет, <b>{{ first_name }}</b>!</p>",
                       {"first_name": "<script>alert(1)</script>"})
    assert html == "<p>Привет, <b>&lt;script&gt;alert(1)&lt;/script&gt;</b>!</p>"


def test_html_turns_braces_in_values_into_entities():
    # Unisender Go would otherwise read a client's "{{ x }}" as its own tag.
    html = render_html("{{ first_name }}", {"first_name": "{{ x }}"})
    assert html == "&#123;&#123; x &#125;&#125;"


def test_plain_text_is_not_escaped():
    assert render_text("{{ first_name }}", {"first_name": "<b>Анна & Co</b>"}) \
        == "<b>Анна & Co</b>"


def test_kind_parameter_matches_the_helpers():
    ctx = {"first_name": "<i>"}
    assert render("{{ first_name }}", ctx, kind="html") == "&lt;i&gt;"
    assert render("{{ first_name }}", ctx, kind="text") == "<i>"


def test_none_renders_empty():
    assert render_html("[{{ email }}]", {"email": None}) == "[]"
    assert render_text("[{{ email }}]", {"email": None}) == "[]"


def test_if_and_simple_filters_are_allowed():
    src = ("{% if tier == 'Серебряный' %}{{ first_name|upper }}{% else %}-{% endif %}"
           "{{ email|default('нет', true) }}")
    assert render_text(src, {**SAMPLE_CONTEXT, "email": ""}) == "АННАнет"


@pytest.mark.parametrize("kind", ["html", "text"])
def test_unknown_placeholder_is_named(kind):
    with pytest.raises(TemplateError) as err:
        render("Баланс: {{ balanse }}", SAMPLE_CONTEXT, kind=kind)
    assert err.value.placeholder == "balanse"
    assert str(err.value) == "Неизвестная переменная шаблона: {{ balanse }}"


def test_known_placeholder_missing_from_context_says_so():
    ctx = {k: v for k, v in SAMPLE_CONTEXT.items() if k != "missing"}
    with pytest.raises(TemplateError) as err:
        render_text("{{ missing }}", ctx)
    assert err.value.placeholder == "missing"
    assert "{{ missing }}" in str(err.value) and "недоступна" in str(err.value)


def test_jinja_globals_are_not_placeholders():
    with pytest.raises(TemplateError) as err:
        render_text("{{ range }}", SAMPLE_CONTEXT)
    assert err.value.placeholder == "range"


@pytest.mark.parametrize("src", ["{{ first_name ", "{% if %}", "{{ first_name }}{% endif %}",
                                 "{% if first_name %}"])
def test_syntax_error_is_a_template_error(src):
    with pytest.raises(TemplateError) as err:
        render_text(src, SAMPLE_CONTEXT)
    assert err.value.placeholder is None
    assert str(err.value).startswith("Ошибка в шаблоне, строка")
    assert err.value.__suppress_context__  # no jinja traceback chained to ours


@pytest.mark.parametrize("src", [
    "{{ ''.__class__ }}",
    "{{ first_name.__class__.__mro__ }}",
    "{{ first_name['__class__'] }}",
    "{{ first_name.upper() }}",
    "{% for a in first_name %}{{ a }}{% endfor %}",
    "{% set x = 1 %}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ 'x' * 1000000000 }}",
    "{% include 'x' %}",
    "{% macro m() %}{% endmacro %}",
    "{% autoescape false %}{{ first_name }}{% endautoescape %}",
])
@pytest.mark.parametrize("kind", ["html", "text"])
def test_sandbox_violations_are_template_errors(src, kind):
    with pytest.raises(TemplateError) as err:
        render(src, SAMPLE_CONTEXT, kind=kind)
    assert "нельзя" in str(err.value)


@pytest.mark.parametrize("filter_name", ["safe", "center", "attr", "format", "map"])
def test_unsafe_or_costly_filters_are_refused(filter_name):
    with pytest.raises(TemplateError) as err:
        render_html("{{ first_name|%s }}" % filter_name, SAMPLE_CONTEXT)
    assert f"«{filter_name}»" in str(err.value)


def test_runtime_fault_is_a_template_error():
    with pytest.raises(TemplateError) as err:
        render_text("{{ first_name|truncate('x') }}", SAMPLE_CONTEXT)
    assert str(err.value).startswith("Не удалось заполнить шаблон")


def test_template_length_is_limited():
    with pytest.raises(TemplateError, match="длиннее"):
        render_text("a" * (t.MAX_TEMPLATE_CHARS + 1), {})
    assert render_text("a" * t.MAX_TEMPLATE_CHARS, {}) == "a" * t.MAX_TEMPLATE_CHARS


def test_rendered_length_is_limited():
    ctx = {"first_name": "я" * t.MAX_OUTPUT_CHARS}
    with pytest.raises(TemplateError, match="Текст уведомления длиннее"):
        render_text("{{ first_name }}!", ctx)


def test_check_validates_names_against_placeholders():
    check("{{ first_name }} {{ missing }}")
    with pytest.raises(TemplateError) as err:
        check("{{ frist_name }}", kind="html")
    assert err.value.placeholder == "frist_name"
    check("{{ custom }}", known={"custom": "x"})


def test_sample_context_covers_every_placeholder():
    assert set(SAMPLE_CONTEXT) == set(PLACEHOLDERS)
    assert SAMPLE_CONTEXT["first_name"] == "Анна"
    assert SAMPLE_CONTEXT["tier"] == "Серебряный"
    assert SAMPLE_CONTEXT["balance"] == f"1{NBSP}250"


def test_the_expected_defaults_exist():
    expected = {
        "accrual_sms", "accrual_email", "accrual_manager", "debit_sms", "debit_email",
        "missing_email_manager", "card_refused_manager", "birthday_email", "birthday_manager",
        "birthday_no_card_manager", "no_birthdate_manager", "expiry_warning_sms",
        "expiry_warning_email", "tier_up_sms", "tier_up_email",
    }
    assert expected <= set(DEFAULT_TEMPLATES)


@pytest.mark.parametrize("name", sorted(DEFAULT_TEMPLATES))
def test_every_default_renders_with_the_sample(name):
    tpl = DEFAULT_TEMPLATES[name]
    check(tpl.body, kind=tpl.kind)
    rendered = render_notice(tpl, SAMPLE_CONTEXT)
    assert "{{" not in rendered.body and "Анна" in rendered.body
    if tpl.channel == "email":
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.body.startswith("<p>")
    else:
        assert tpl.subject is None and rendered.subject is None
        assert "<" not in rendered.body
    if tpl.channel == "sms":
        # Cyrillic goes as UCS-2: 140 chars is about two billed parts.
        assert len(rendered.body) <= 140


def test_card_refused_names_the_missing_fields():
    body = render_notice(DEFAULT_TEMPLATES["card_refused_manager"], SAMPLE_CONTEXT).body
    assert "дата рождения, e-mail" in body


def test_birthday_manager_has_what_the_call_needs():
    body = render_notice(DEFAULT_TEMPLATES["birthday_manager"], SAMPLE_CONTEXT).body
    for key in ("first_name", "last_name", "phone", "card_number", "balance", "tier"):
        assert SAMPLE_CONTEXT[key] in body


def test_default_email_escapes_client_data():
    ctx = {**SAMPLE_CONTEXT, "first_name": "<script>x</script>"}
    rendered = render_notice(DEFAULT_TEMPLATES["accrual_email"], ctx)
    assert "<script>" not in rendered.body and "&lt;script&gt;" in rendered.body
    assert rendered.subject.startswith("<script>")  # the subject is plain text


@pytest.mark.parametrize("kop, text", [
    (0, "0"), (5, "0,05"), (100, "1"), (15_000, "150"), (125_000, f"1{NBSP}250"),
    (125_050, f"1{NBSP}250,50"), (125_005, f"1{NBSP}250,05"),
    (123_456_789, f"1{NBSP}234{NBSP}567,89"), (-125_050, f"-1{NBSP}250,50"),
])
def test_format_bonus(kop, text):
    assert format_bonus(kop) == text


@pytest.mark.parametrize("bad", [1.5, "100", True, None])
def test_format_bonus_takes_integers_only(bad):
    with pytest.raises(TypeError):
        format_bonus(bad)
