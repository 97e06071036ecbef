"""Notification templates: safe rendering of user-edited texts, defaults, money format.

Templates are written by portal admins in the app's settings, so they are untrusted input:
they run in jinja2's immutable sandbox with a small grammar (placeholders, filters, if/else),
and every failure comes out as one `TemplateError` with a Russian message for the UI.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

Kind = Literal["html", "text"]
Channel = Literal["sms", "email", "chat"]

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 50_000

# Loops, calls, attribute access, assignments, includes and `**`/`*` are left out: notices
# don't need them, and without them a template can neither escape the sandbox nor burn CPU
# or memory (`{% for %}` in `{% for %}`, `'x' * 10**9`, `''.center(10**9)`).
_ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const,
    nodes.If, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare, nodes.Operand,
    nodes.Test, nodes.Filter, nodes.Keyword, nodes.Concat, nodes.List, nodes.Tuple,
)
_NODE_NAMES = {
    "For": "циклы {% for %}", "Getattr": "обращение к атрибутам", "Getitem": "обращение к "
    "элементам", "Call": "вызов функций", "Assign": "{% set %}", "AssignBlock": "{% set %}",
    "Macro": "макросы", "Include": "{% include %}", "Extends": "{% extends %}",
    "Import": "{% import %}", "FromImport": "{% import %}", "Block": "{% block %}",
    "Pow": "возведение в степень", "Mul": "умножение", "Add": "арифметику", "Sub": "арифметику",
    "Div": "арифметику", "FloorDiv": "арифметику", "Mod": "арифметику", "Neg": "арифметику",
    "ScopedEvalContextModifier": "{% autoescape %}",
}
# No `safe` (it would switch HTML escaping off) and nothing that can grow a string a lot.
_ALLOWED_FILTERS = ("upper", "lower", "capitalize", "title", "trim", "default", "d",
                    "truncate", "striptags", "escape", "e")
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")


class TemplateError(Exception):
    """A template that can't be saved or rendered; `placeholder` names the culprit if known."""

    def __init__(self, placeholder: str | None, message: str) -> None:
        super().__init__(message)
        self.placeholder = placeholder
        self.message = message


def _finalize_html(value: Any) -> Any:
    if value is None:
        return ""
    # Braces as entities: Unisender Go runs its own `{{…}}` engine over the HTML body, and a
    # client called "{{ x }}" would make it reject the letter (unisender.md §5).
    return Markup(str(escape(value)).replace("{", "&#123;").replace("}", "&#125;"))


def _finalize_text(value: Any) -> Any:
    return "" if value is None else value


def _environment(kind: Kind) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=kind == "html", undefined=StrictUndefined,
        finalize=_finalize_html if kind == "html" else _finalize_text)
    env.globals.clear()  # `range`, `lipsum`, `cycler` …: only our placeholders are names
    env.filters = {name: env.filters[name] for name in _ALLOWED_FILTERS}
    return env


_ENVIRONMENTS = {"html": _environment("html"), "text": _environment("text")}


def _syntax_error(exc: TemplateSyntaxError) -> TemplateError:
    name = re.search(r"No filter named '([^']+)'", exc.message or "")
    if name:
        return TemplateError(None, f"Фильтр «{name.group(1)}» в шаблоне не поддерживается")
    return TemplateError(None, f"Ошибка в шаблоне, строка {exc.lineno}: {exc.message}")


def _check_grammar(ast: nodes.Template) -> None:
    for node in ast.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            what = _NODE_NAMES.get(type(node).__name__, type(node).__name__)
            raise TemplateError(None, f"В шаблоне нельзя использовать: {what} "
                                      f"(строка {node.lineno})")
        if isinstance(node, nodes.Name) and node.ctx != "load":
            raise TemplateError(node.name, f"В шаблоне нельзя присваивать: {node.name}")


@lru_cache(maxsize=256)
def _compile(source: str, kind: Kind) -> tuple[Any, tuple[str, ...], tuple | None]:
    """Parse, vet and compile once; returns the template, the placeholder names it uses
    (sorted: the first one missing is the one named) and its plain form (`_plain`)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(None, f"Шаблон длиннее {MAX_TEMPLATE_CHARS} символов")
    env = _ENVIRONMENTS[kind]
    try:
        ast = env.parse(source)
        _check_grammar(ast)
        return (env.from_string(ast), tuple(sorted(meta.find_undeclared_variables(ast))),
                _plain(ast))
    except TemplateSyntaxError as exc:  # includes unknown filters and tests
        raise _syntax_error(exc) from None


def _plain(ast: nodes.Template) -> tuple[tuple[str, str | None], ...] | None:
    """A template of text and bare `{{ placeholder }}`s (every default one) as its pieces:
    (text, None) or ("", name). jinja's Context and generator cost more than such a
    notice's text; rendered by `_render_plain` exactly as jinja's compiled code would
    render them. None for anything else (filters, tags, constants): jinja renders it."""
    pieces = []
    for output in ast.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces.append((node.data, None))
            elif type(node) is nodes.Name and node.ctx == "load" and node.name in PLACEHOLDERS:
                pieces.append(("", node.name))
            else:
                return None
    return tuple(pieces)


def _unknown(name: str) -> TemplateError:
    if name in PLACEHOLDERS:
        return TemplateError(name, f"Переменная {{{{ {name} }}}} недоступна в этом уведомлении")
    return TemplateError(name, f"Неизвестная переменная шаблона: {{{{ {name} }}}}")


def check(source: str, *, kind: Kind = "text",
          known: Mapping[str, Any] | None = None) -> None:
    """Validate a template before saving it: grammar and names (default: `PLACEHOLDERS`)."""
    _, names, _ = _compile(source, kind)
    allowed = PLACEHOLDERS if known is None else known
    for name in names:
        if name not in allowed:
            raise _unknown(name)


def render(source: str, context: Mapping[str, Any], *, kind: Kind) -> str:
    """Render `source`: "html" escapes values (e-mail), "text" doesn't (SMS, chat)."""
    template, names, plain = _compile(source, kind)
    for name in names:
        if name not in context:
            raise _unknown(name)
    try:
        if plain is not None and type(context) is dict:
            # jinja's context is built as dict(globals, **context): str keys or a TypeError
            return _render_plain(plain, dict(**context), kind)
        return _render_bounded(template, context)
    except TemplateError:
        raise
    except UndefinedError as exc:
        found = _UNDEFINED_NAME.search(str(exc.message))
        raise _unknown(found.group(1) if found else "?") from None
    except Exception as exc:  # noqa: BLE001 - any fault of a user's template is theirs
        raise TemplateError(None, f"Не удалось заполнить шаблон: {exc}") from None


def _render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in template.generate(dict(context)):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(None, f"Текст уведомления длиннее {MAX_OUTPUT_CHARS} символов")
        parts.append(chunk)
    return "".join(parts)


def _render_plain(pieces: tuple, context: dict, kind: Kind) -> str:
    """What jinja's compiled code yields for text and bare names: the text as written, a
    value as `escape(finalize(value))` when autoescaping (html), `str(finalize(value))`
    otherwise; bounded as `_render_bounded` bounds it, piece by piece."""
    finalize = _ENVIRONMENTS[kind].finalize
    convert = escape if kind == "html" else str
    parts: list[str] = []
    size = 0
    for text, name in pieces:
        chunk = text if name is None else convert(finalize(context[name]))
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(None, f"Текст уведомления длиннее {MAX_OUTPUT_CHARS} символов")
        parts.append(chunk)
    return "".join(parts)


def render_html(source: str, context: Mapping[str, Any]) -> str:
    return render(source, context, kind="html")


def render_text(source: str, context: Mapping[str, Any]) -> str:
    return render(source, context, kind="text")


# ---------------------------------------------------------------- money

NBSP = "\u00a0"  # keeps "1 250" on one line in mail and chat; any SMS here is UCS-2 anyway


def format_bonus(kop: int) -> str:
    """Bonus amount in kopecks as Russian text: 125000 → "1 250", 125050 → "1 250,50"."""
    if isinstance(kop, bool) or not isinstance(kop, int):
        raise TypeError(f"format_bonus takes integer kopecks, got {type(kop).__name__}")
    sign = "-" if kop < 0 else ""
    units, cents = divmod(abs(kop), 100)
    text = f"{units:,}".replace(",", NBSP)
    return f"{sign}{text},{cents:02d}" if cents else f"{sign}{text}"


# ---------------------------------------------------------------- placeholders and defaults

PLACEHOLDERS: dict[str, str] = {
    "first_name": "Имя клиента",
    "last_name": "Фамилия клиента",
    "phone": "Телефон клиента (цифры, с кодом страны)",
    "email": "E-mail клиента",
    "card_number": "Номер карты лояльности",
    "balance": "Баланс бонусов после операции",
    "tier": "Уровень клиента в программе лояльности",
    "accrued": "Сколько бонусов начислено",
    "debited": "Сколько бонусов списано",
    "expiring": "Сколько бонусов скоро сгорит",
    "expires_on": "Дата сгорания бонусов (ДД.ММ.ГГГГ)",
    "missing": "Каких данных клиента не хватает для выпуска карты",
    "code": "Одноразовый код входа в личный кабинет (только в SMS с кодом)",
    "minutes": "Сколько минут действует код входа",
}

SAMPLE_CONTEXT: dict[str, str] = {
    "first_name": "Анна",
    "last_name": "Петрова",
    "phone": "79161234567",
    "email": "anna.petrova@example.ru",
    "card_number": "1002457",
    "balance": format_bonus(125_000),
    "tier": "Серебряный",
    "accrued": format_bonus(15_000),
    "debited": format_bonus(30_000),
    "expiring": format_bonus(20_000),
    "expires_on": "31.07.2026",
    "missing": "дата рождения, e-mail",
    "code": "482913",
    "minutes": "5",
}


@dataclass(frozen=True)
class NoticeTemplate:
    """One notice: e-mail bodies are HTML, SMS and chat texts are plain."""

    channel: Channel
    body: str
    subject: str | None = None

    @property
    def kind(self) -> Kind:
        return "html" if self.channel == "email" else "text"


@dataclass(frozen=True)
class RenderedNotice:
    body: str
    subject: str | None = None


def render_notice(template: NoticeTemplate, context: Mapping[str, Any]) -> RenderedNotice:
    """Render body and subject; the subject is plain text folded onto one line."""
    subject = None
    if template.subject is not None:
        subject = " ".join(render(template.subject, context, kind="text").split())
    return RenderedNotice(body=render(template.body, context, kind=template.kind).strip(),
                          subject=subject)


def _sms(body: str) -> NoticeTemplate:
    return NoticeTemplate("sms", body)


def _email(subject: str, body: str) -> NoticeTemplate:
    return NoticeTemplate("email", body, subject)


def _chat(body: str) -> NoticeTemplate:
    return NoticeTemplate("chat", body)


def _letter(*paragraphs: str) -> str:
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)


_CLIENT = "{{ first_name }} {{ last_name }}"
_THANKS = "Спасибо, что вы с нами!"

# "Начислено бонусов: 150" rather than "150 бонусов": no plural forms to get wrong.
DEFAULT_TEMPLATES: dict[str, NoticeTemplate] = {
    "accrual_sms": _sms("{{ first_name }}, начислено бонусов: {{ accrued }}. "
                        "Баланс: {{ balance }}. Карта {{ card_number }}"),
    "accrual_email": _email(
        "{{ first_name }}, вам начислены бонусы",
        _letter("Здравствуйте, {{ first_name }}!",
                "На вашу карту № {{ card_number }} начислено бонусов: <b>{{ accrued }}</b>.",
                "Баланс: <b>{{ balance }}</b>. Ваш уровень: {{ tier }}.", _THANKS)),
    "accrual_manager": _chat(f"Клиенту {_CLIENT} (карта {{{{ card_number }}}}) начислено "
                             "бонусов: {{ accrued }}. Баланс: {{ balance }}."),
    "debit_sms": _sms("{{ first_name }}, списано бонусов: {{ debited }}. "
                      "Остаток: {{ balance }}. Карта {{ card_number }}"),
    "debit_email": _email(
        "{{ first_name }}, вы оплатили покупку бонусами",
        _letter("Здравствуйте, {{ first_name }}!",
                "С вашей карты № {{ card_number }} списано бонусов: <b>{{ debited }}</b>.",
                "Остаток: <b>{{ balance }}</b>.", _THANKS)),
    "missing_email_manager": _chat(
        f"У клиента {_CLIENT} (тел. {{{{ phone }}}}, карта {{{{ card_number }}}}) не указан "
        "e-mail, поэтому письма о бонусах ему не приходят. Узнайте адрес у клиента и "
        "внесите его в карточку контакта."),
    "card_refused_manager": _chat(
        f"Карта лояльности для клиента {_CLIENT} не выпущена: не заполнено — {{{{ missing }}}}. "
        "Заполните эти поля в карточке контакта и запустите выпуск карты снова."),
    "birthday_email": _email(
        "{{ first_name }}, с днём рождения!",
        _letter("{{ first_name }}, поздравляем вас с днём рождения!",
                "Желаем радости, здоровья и приятных покупок. На вашей карте "
                "№ {{ card_number }} бонусов: <b>{{ balance }}</b>, ими можно оплатить "
                "часть покупки.")),
    "birthday_manager": _chat(
        f"Завтра день рождения у клиента {_CLIENT}. Позвоните и поздравьте: {{{{ phone }}}}. "
        "Карта {{ card_number }}, уровень «{{ tier }}», баланс бонусов: {{ balance }}."),
    "birthday_no_card_manager": _chat(
        f"Завтра день рождения у клиента {_CLIENT} (тел. {{{{ phone }}}}). Карты лояльности "
        "у клиента нет: поздравьте и предложите её оформить."),
    "no_birthdate_manager": _chat(
        f"У клиента {_CLIENT} (тел. {{{{ phone }}}}, карта {{{{ card_number }}}}) не указана "
        "дата рождения. Уточните её, чтобы мы могли поздравить клиента."),
    "expiry_warning_sms": _sms("{{ first_name }}, {{ expires_on }} сгорит бонусов: "
                               "{{ expiring }}. Баланс: {{ balance }}. Успейте потратить!"),
    "expiry_warning_email": _email(
        "{{ first_name }}, часть бонусов скоро сгорит",
        _letter("Здравствуйте, {{ first_name }}!",
                "{{ expires_on }} на карте № {{ card_number }} сгорит бонусов: "
                "<b>{{ expiring }}</b>.",
                "Сейчас на карте: <b>{{ balance }}</b>. Успейте оплатить ими покупку!")),
    "tier_up_sms": _sms("{{ first_name }}, поздравляем! Ваш новый уровень: «{{ tier }}». "
                        "Баланс бонусов: {{ balance }}"),
    "login_code_sms": _sms("{{ first_name }}, код для входа в личный кабинет: {{ code }}. "
                           "Действует {{ minutes }} мин. Никому не сообщайте."),
    "tier_up_email": _email(
        "{{ first_name }}, ваш новый уровень: {{ tier }}",
        _letter("Здравствуйте, {{ first_name }}!",
                "Поздравляем: теперь у вас уровень «{{ tier }}» в нашей программе лояльности.",
                "Бонусов на карте № {{ card_number }}: <b>{{ balance }}</b>.", _THANKS)),
}
