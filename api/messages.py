"""The REST API speaks English; the ledger, the app's pages and the Bitrix24 activities
speak Russian (the pages translate for LANG=en themselves). This is the API's catalog:
each Russian text a validator or a domain error can produce, and its English.

Text with no entry is shown as it is (a message that says what is wrong beats a uniform
one that does not); tests/test_api_contract.py checks that the API's errors are English.
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
    (r"Операции по сделке/заказу (.*) уже отменены",
     r"The operations of \1 were already reversed."),
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
    # the API's own documents: webhooks, the client site and login, exports, forgetting
    (r"Непустой список из: (.*)", r"A non-empty list of: \1"),
    (r"Не больше (\d+) подписок на портал\.", r"At most \1 subscriptions a portal."),
    (r"Подписка (\d+) не найдена", r"Subscription \1 not found."),
    (r"Событие (.*) не найдено", r"Event \1 not found."),
    (r"Нужен адрес до (\d+) символов\.", r"An address of at most \1 characters is required."),
    (r"Адрес не разобрать\.", "The address cannot be parsed."),
    (r"Только https://\.", "https:// only."),
    (r"Только https:// \(http разрешается настройкой WEBHOOK_ALLOW_HTTP\)\.",
     "https:// only (the WEBHOOK_ALLOW_HTTP setting allows http)."),
    (r"Нужен адрес вида https://host/path, без логина и пароля\.",
     "An address like https://host/path, without user or password, is required."),
    (r"Имя (\S+) не разрешается\.", r"The name \1 does not resolve."),
    (r"(\S+) указывает на закрытый адрес \((.*)\): запрещено\.",
     r"\1 points to a private address (\2): refused."),
    (r"Список, не больше (\d+) адресов\.", r"A list of at most \1 addresses."),
    (r"Нужен адрес сайта вида https://shop\.example\.ru",
     "A site address like https://shop.example.ru is required."),
    (r"Сайт не найден или вход клиентов на нём выключен\.",
     "No such site, or client login is off there."),
    (r"Неизвестный site_id\.", "Unknown site_id."),
    (r"Код: (\d+) цифр из SMS\.", r"The code: \1 digits from the SMS."),
    (r"Код неверный или устарел\. Запросите новый\.",
     "The code is wrong or expired. Ask for a new one."),
    (r"Неверный или устаревший код\.", "Wrong or expired code."),
    (r"Нужен токен клиента: .*", "A client token is required: Authorization: Bearer ct.…"),
    (r"Нужен заголовок Authorization: Bearer <токен клиента>\.",
     "An Authorization: Bearer <client token> header is required."),
    (r"Сеанс истёк: войдите снова по коду из SMS\.",
     "The session expired: log in again with an SMS code."),
    (r"Токен клиента неверен\.", "The client token is not valid."),
    (r"Карта недоступна: войдите снова\.", "The card is not available: log in again."),
    (r"Слишком много попыток: повторите через (\d+) с\.",
     r"Too many attempts: try again in \1 s."),
    (r"Сайт для входа клиентов ещё не настроен: PUT\.",
     "The client login site is not set up yet: PUT it."),
    (r"Не раньше from\.", "Not before `from`."),
    (r"Не больше (\d+) дней\.", r"At most \1 days."),
    (r"Укажите основание \(до (\d+) символов\)\.", r"Give the grounds (up to \1 characters)."),
]]


def english(text: str) -> str:
    """The English of a message (as it is when the catalog has none). Names the client
    gave (tiers, references) stay as given in the groups copied over."""
    for pattern, en in CATALOG:
        match = pattern.match(text)
        if match:
            return match.expand(en)
    return text


def english_fields(fields: dict) -> dict:
    return {name: english(str(text)) for name, text in fields.items()}
