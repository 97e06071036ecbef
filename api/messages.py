"""The REST API speaks English; the ledger, the app's pages and the Bitrix24 activities
speak Russian (the pages translate for LANG=en themselves). This is the API's catalog:
each Russian text a validator or a domain error can produce, and its English.

Text with no entry is never shown as is: the API falls back to a generic English line
for the field or the code, so an error body is always in one language.
"""
from __future__ import annotations

import re

MONEY = r"-?[0-9]+\.[0-9]{2}"

# (pattern of the Russian text, English with \1-style groups). Full matches only.
CATALOG = [(re.compile(rf"{ru}\Z", re.S), en) for ru, en in [
    # money and percents (api.ledger.money, api.ledger.fields)
    (r"Ожидается число\.", "Expected a number."),
    (r"Ожидается число вида 1500\.50\.", "Expected a number like 1500.50 (or 1500,50)."),
    (r"Ожидается конечное число\.", "Expected a finite number."),
    (r"Слишком большая сумма\.", "The amount is too large."),
    (r"Слишком длинное число\.", "The number is too long."),
    (r"Неоднозначная сумма: .*", "Ambiguous amount: a comma before exactly three digits could "
                                 "be a thousands separator. Write 1500 or 1500.00."),
    (r"Не больше двух знаков после запятой\.", "At most two decimal places."),
    (r"Сумма не может быть отрицательной\.", "The amount cannot be negative."),
    (r"Сумма должна быть больше нуля\.", "The amount must be greater than zero."),
    (rf"Не больше ({MONEY})\.", r"At most \1."),
    (r"Ожидается число от 0 до 100\.", "Expected a number from 0 to 100."),
    (r"Процент должен быть от 0 до 100\.", "The percent must be from 0 to 100."),
    # program rules (api.ledger.rules)
    (r"Первый уровень должен начинаться с 0\.", "The first tier must start at 0."),
    (r"Пороги уровней должны строго возрастать\.", "Tier thresholds must strictly ascend."),
    (r"Названия уровней не должны повторяться\.", "Tier names must be unique."),
    (r"Код поля: латиница, цифры, _\.", "A field code: Latin letters, digits and _."),
    # documents, cards, operations, idempotency
    (r"Ожидается объект JSON\.", "Expected a JSON object."),
    (r"Неизвестное поле\.", "Unknown field."),
    (r"Обязательное поле\.", "Required."),
    (r"Ожидается дата\.", "Expected a date."),
    (r"Ожидается номер телефона строкой\.", "Expected a phone number as a string."),
    (r"Неверный номер телефона(: .*|\.)", "Not a valid phone number."),
    (r"Строка от 1 до (\d+) символов\.", r"A string of 1 to \1 characters."),
    (r"Укажите причину корректировки\.", "Give the reason for the adjustment."),
    (r"Сумма корректировки не может быть нулевой\.", "An adjustment cannot be zero."),
    (r"Нужен ключ идемпотентности \(Idempotency-Key\)\.", "An Idempotency-Key is required."),
    (r"Не длиннее (\d+) символов\.", r"At most \1 characters."),
    (r"Карта с этим телефоном уже есть\.", "A card with this phone already exists."),
    (rf"Доступно ({MONEY})\.", r"\1 available."),
    # domain errors' messages (api.ledger.errors)
    (r"Не хватает данных для карты: (.*)", r"Missing data for the card: \1"),
    (r"Карта не найдена: контакт (\d+)", r"No card for contact \1."),
    (r"Карта не найдена: (.*)", r"Card not found: \1"),
    (r"По сделке/заказу (.*) нет начислений и списаний для отмены",
     r"Nothing was accrued or debited for reference \1, so there is nothing to reverse."),
    (r"Карта (\S+) уже выдана контакту (\d+)", r"Card \1 is already issued to contact \2."),
    (r"Карта (\S+) уже выдана другому клиенту", r"Card \1 is already issued to another client."),
    (r"Карта (\S+) заблокирована", r"Card \1 is blocked."),
    (r"По сделке/заказу (.*) бонусы уже начислены", r"Bonuses were already accrued for \1."),
    (r"Операции по сделке/заказу (.*) уже отменены", r"The operations of \1 were already reversed."),
    (r"Этот Idempotency-Key уже использован для другого запроса",
     "This Idempotency-Key was already used for a different request."),
    (rf"Недостаточно бонусов: доступно ({MONEY})", r"Not enough bonuses: \1 available."),
    (rf"Бонусами можно оплатить не больше ({MONEY}) этого заказа",
     r"At most \1 of this order can be paid with bonuses."),
    # notification templates (notifications.templates)
    (r"Ошибка в шаблоне, строка (\d+): (.*)", r"Template error, line \1: \2"),
    (r"Фильтр «(.*)» в шаблоне не поддерживается", r"The template filter '\1' is not supported."),
    (r"В шаблоне нельзя использовать: (.*) \(строка (\d+)\)",
     r"Not allowed in a template (line \2)."),
    (r"В шаблоне нельзя присваивать: (.*)", r"Templates cannot assign: \1"),
    (r"Шаблон длиннее (\d+) символов", r"The template is longer than \1 characters."),
    (r"Переменная (\{\{ \w+ \}\}) недоступна в этом уведомлении",
     r"The variable \1 is not available in this notice."),
    (r"Неизвестная переменная шаблона: (\{\{ \w+ \}\})", r"Unknown template variable: \1"),
    (r"Не удалось заполнить шаблон: (.*)", r"The template could not be rendered: \1"),
    (r"Текст уведомления длиннее (\d+) символов", r"The notice text is longer than \1 characters."),
]]
CYRILLIC = re.compile("[\u0400-\u04ff]")


def english(text: str, fallback: str) -> str:
    """The English of a message; fallback when the text is Russian and not in the catalog.
    Names the client gave (tiers, references) may stay in the groups copied over."""
    for pattern, en in CATALOG:
        match = pattern.match(text)
        if match:
            return match.expand(en)
    return fallback if CYRILLIC.search(text) else text


def english_fields(fields: dict) -> dict:
    return {name: english(str(text), "Invalid value.") for name, text in fields.items()}
