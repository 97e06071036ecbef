"""Russian by default; English when Bitrix24 opened the app with LANG=en.

Templates and views write Russian text and pass it through `tr`; this table gives the
English. Text with no entry stays Russian (ledger validation messages, for instance).
"""
from __future__ import annotations

from flask import g, has_request_context, request

from pages.frame import lang_of


def lang() -> str:
    viewer = g.get("viewer") if has_request_context() else None
    if viewer is not None:
        return viewer.lang
    return lang_of(request.args.get("LANG")) if has_request_context() else "ru"


def tr(text: str) -> str:
    return EN.get(text, text) if lang() == "en" else text


EN = {
    # navigation and common
    "Программа лояльности": "Loyalty program",
    "Правила": "Rules", "Уведомления": "Notifications", "Клиенты": "Clients",
    "Состояние": "Health", "Сохранить": "Save", "Отмена": "Cancel", "Назад": "Back",
    "Подтвердить": "Confirm", "Найти": "Search", "Далее": "Next", "Ранее": "Previous",
    "Подтвердите действие": "Confirm the action", "Ошибка": "Error",
    "Исправьте поля, отмеченные ниже.": "Fix the fields marked below.",
    ("Пока вы редактировали, эти настройки сохранил другой администратор. Ваши изменения не "
     "записаны; проверьте поля и сохраните снова, чтобы заменить ими его версию."): (
        "Another admin saved these settings while you were editing. Your changes were not "
        "written; check the fields and save again to replace their version with yours."),
    "Нет доступа": "No access", "да": "yes", "нет": "no", "—": "—",
    "Администратор портала пока не открыл вам доступ к программе лояльности.":
        "The portal administrator has not given you access to the loyalty program yet.",
    # frame and roles
    "Откройте приложение из Битрикс24.": "Open the app from Bitrix24.",
    "Приложение не установлено на этом портале.": "The app is not installed on this portal.",
    "Запрос не из Битрикс24: неверный APPLICATION_TOKEN.":
        "Not a Bitrix24 request: wrong APPLICATION_TOKEN.",
    "Авторизация Битрикс24 не подтвердилась или истекла. Откройте приложение заново.":
        "Bitrix24 authorization failed or expired. Open the app again.",
    "Пользователь не активен на портале.": "The user is not active on the portal.",
    "Страница устарела. Откройте приложение заново.": "The page has expired. Open the app again.",
    "Неверная подпись страницы. Откройте приложение заново.":
        "Bad page signature. Open the app again.",
    "Форма устарела или подделана. Откройте страницу заново.":
        "The form is stale or forged. Open the page again.",
    "Недостаточно прав: обратитесь к администратору портала.":
        "Not allowed: ask the portal administrator.",
    # messages
    "Сохранено. Изменения действуют со следующей операции.":
        "Saved. Changes apply from the next operation.",
    "Права доступа сохранены.": "Access rights saved.",
    "Настройки уведомлений сохранены.": "Notification settings saved.",
    "Шаблон сохранён.": "Template saved.",
    "Тестовое сообщение поставлено в очередь: его судьба видна в журнале.":
        "The test message is queued: see the log for its fate.",
    "Корректировка проведена.": "Adjustment made.",
    "Эта операция уже была проведена: повтор ничего не изменил.":
        "This operation was already made: the repeat changed nothing.",
    "Начисление по сделке отменено.": "The deal's accrual is reversed.",
    "Карта заблокирована.": "Card blocked.", "Карта разблокирована.": "Card unblocked.",
    "Карта выпущена.": "Card issued.", "Карта уже была у этого контакта.":
        "The contact already had this card.",
    "Регистрации восстановлены.": "Registrations repaired.",
    "Восстановление не удалось.": "Repair failed.",
    "Доставка повторена.": "Delivery retried.",
    "Повторная доставка не удалась, причина — в таблице.":
        "The retry failed; the reason is in the table.",
    # rules page
    "Правила программы": "Program rules", "Уровни": "Tiers", "Название": "Name",
    "Порог покупок, ₽": "Purchases threshold, ₽", "Процент": "Percent",
    "Пустая строка удаляет уровень; новые уровни — в пустых строках.":
        "A blank row removes a tier; add tiers in the blank rows.",
    "Округление": "Rounding", "вниз": "down", "математически": "half up", "вверх": "up",
    "до целых бонусов": "to whole bonuses", "до копеек": "to kopecks",
    "Срок жизни бонусов, дней": "Bonus lifetime, days",
    "Максимальная доля заказа, оплачиваемая бонусами, %":
        "Maximum share of an order paid with bonuses, %",
    "Приветственный бонус": "Welcome bonus", "Бонус на день рождения": "Birthday bonus",
    "Обязательные поля карты": "Required card fields",
    "Поле контакта с категорией клиента": "Contact field holding the client category",
    "например UF_CRM_CATEGORY; пусто — не читать": "e.g. UF_CRM_CATEGORY; blank: not read",
    "фамилия": "last name", "имя": "first name", "отчество": "middle name",
    "мобильный телефон": "mobile phone", "категория клиента": "client category",
    "e-mail": "e-mail", "дата рождения": "birthdate",
    "Доступ для сотрудников": "Access for employees",
    "Администраторы портала могут всё. Остальным сотрудникам:":
        "Portal admins may do everything. Other employees may:",
    "видеть карты клиентов и историю": "see client cards and history",
    "менять карты и баланс: выпуск, блокировка, корректировка, отмена начисления":
        "change cards and balances: issue, block, adjust, reverse",
    "Изменено": "Changed", "кем": "by",
    "Целое число дней от 1 до 3650.": "A whole number of days from 1 to 3650.",
    # notifications
    "Настройки UniSender": "UniSender settings", "Ключ UniSender (SMS)": "UniSender key (SMS)",
    "Ключ Unisender Go (e-mail)": "Unisender Go key (e-mail)",
    "не задан": "not set", "оставьте пустым, чтобы не менять": "leave blank to keep",
    "Сервер Unisender Go": "Unisender Go host", "E-mail отправителя": "Sender e-mail",
    "Имя отправителя": "Sender name", "Имя отправителя SMS": "SMS sender name",
    "Сообщения менеджеру": "Manager messages", "уведомление": "notification",
    "сообщение в чат": "chat message", "Какие уведомления отправлять": "Which notices are on",
    "Шаблоны": "Templates", "Канал": "Channel", "Шаблон": "Template", "Изменён": "Customised",
    "Журнал уведомлений": "Notification log", "Изменить": "Edit",
    "Тема": "Subject", "Текст": "Body", "Предпросмотр": "Preview",
    "Пример клиента: Анна Петрова.": "Sample client: Anna Petrova.",
    "Переменные": "Placeholders", "Показать текст по умолчанию": "Show the default text",
    "Отправить тест себе": "Send a test to me",
    "Куда отправить тест (ваш e-mail)": "Where to send the test (your e-mail)",
    "Куда отправить тест (ваш телефон)": "Where to send the test (your phone)",
    "Тест придёт вам уведомлением в Битрикс24.":
        "The test comes to you as a Bitrix24 notification.",
    "Укажите e-mail для теста.": "Enter an e-mail for the test.",
    "Неверный e-mail.": "Invalid e-mail.",
    "Статус": "Status", "Получатель": "Recipient", "Попыток": "Attempts",
    "Создано": "Created", "все": "all", "Показать": "Show", "Записей нет.": "No entries.",
    # clients
    "Поиск клиента": "Find a client", "Телефон в любом формате, имя или номер карты":
        "Phone in any format, name or card number",
    "Карта": "Card", "Клиент": "Client", "Уровень": "Tier", "Баланс": "Balance",
    "Ничего не найдено.": "Nothing found.",
    "Выпустить карту для контакта": "Issue a card for a contact",
    "ID контакта в CRM": "CRM contact ID", "Проверить контакт": "Check the contact",
    "активна": "active", "заблокирована": "blocked", "Покупки": "Purchases",
    "До уровня": "To tier", "осталось": "left", "Это высший уровень.": "This is the top tier.",
    "Сгорят в ближайшие 30 дней": "Expiring in the next 30 days",
    "Ничего не сгорает.": "Nothing expires.", "История": "History", "Дата": "Date",
    "Операция": "Operation", "Сумма": "Amount", "Баланс после": "Balance after",
    "Кто": "Actor", "Причина, сделка": "Reason, deal",
    "Отправленные уведомления": "Notifications sent",
    "Корректировка баланса": "Balance adjustment",
    "Сумма (со знаком: -100 списывает)": "Amount (signed: -100 takes away)",
    "Причина": "Reason", "Корректировать": "Adjust", "Укажите причину корректировки.":
        "Give the reason for the adjustment.",
    "Отменить начисление по сделке": "Reverse a deal's accrual", "ID сделки или заказа":
        "Deal or order ID", "Отменить начисление": "Reverse the accrual",
    "Заблокировать карту": "Block the card", "Разблокировать карту": "Unblock the card",
    "Заблокированная карта не копит и не тратит бонусы.":
        "A blocked card neither earns nor spends.",
    "начисление": "accrual", "списание": "debit", "отмена": "reversal",
    "корректировка": "adjustment", "сгорание": "expiry", "приветственные": "welcome",
    "день рождения": "birthday", "Контакт": "Contact", "Не хватает": "Missing",
    "Выпустить карту": "Issue the card", "Контакт не найден.": "Contact not found.",
    "Данные контакта": "Contact data", "Заполните эти поля в карточке контакта.":
        "Fill these fields in the contact card.",
    "Карта не найдена.": "Card not found.", "Введите число.": "Enter a number.",
    # health
    "Подключение к порталу": "Portal connection", "Портал": "Portal",
    "Токены приложения": "App tokens", "работают": "valid", "не работают": "not valid",
    "Последний успешный вызов": "Last successful call",
    "Вход в приложение (profile)": "App opened (profile)",
    "Доставка из очереди": "Delivered from the queue", "Шаг округления": "Rounding step",
    "Регистрации": "Registrations",
    "Действия БП": "Workflow actions", "Роботы": "Robots", "События": "Events",
    "Встройки": "Placements", "Поля контакта": "Contact fields", "Ожидается": "Expected",
    "Нет": "Missing", "в порядке": "OK", "Восстановить": "Repair",
    "Очередь доставки в Битрикс24": "Delivery queue to Bitrix24",
    "Ожидают отправки": "Pending", "Самая старая": "Oldest pending",
    "Неудачные доставки": "Failed deliveries", "Повторить": "Retry",
    "Неудачные e-mail и SMS": "Failed e-mails and SMS", "Неудач нет.": "No failures.",
    "Проверка не удалась": "The check failed",
    # notices (pages.notices.LABELS) and other messages
    "Начисление: SMS клиенту": "Accrual: SMS to the client",
    "Начисление: письмо клиенту": "Accrual: e-mail to the client",
    "Начисление: менеджеру": "Accrual: to the manager",
    "Списание: SMS клиенту": "Debit: SMS to the client",
    "Списание: письмо клиенту": "Debit: e-mail to the client",
    "Нет e-mail клиента: менеджеру": "No client e-mail: to the manager",
    "Карта не выпущена: менеджеру": "Card not issued: to the manager",
    "День рождения: письмо клиенту": "Birthday: e-mail to the client",
    "День рождения: менеджеру": "Birthday: to the manager",
    "День рождения клиента без карты: менеджеру": "Birthday of a client without a card: "
                                                  "to the manager",
    "Нет даты рождения: менеджеру": "No birthdate: to the manager",
    "Бонусы сгорают: SMS клиенту": "Bonuses expiring: SMS to the client",
    "Бонусы сгорают: письмо клиенту": "Bonuses expiring: e-mail to the client",
    "Новый уровень: SMS клиенту": "New tier: SMS to the client",
    "Новый уровень: письмо клиенту": "New tier: e-mail to the client",
    "Укажите сделку или заказ.": "Give the deal or order.",
    "Неизвестный статус карты.": "Unknown card status.",
    "Форма без ключа операции: откройте страницу заново.":
        "The form has no operation key: open the page again.",
    "Нет такого шаблона.": "No such template.", "Нет такой доставки.": "No such delivery.",
    "Нет такого уведомления.": "No such notification.", "Не заполнено.": "Not filled in.",
    # webhooks
    "Вебхуки": "Webhooks", "Подписки": "Subscriptions", "Адрес": "URL",
    "Другие системы узнают о движениях бонусов без опроса: подписанные события по адресу "
    "https, по порядку на каждую карту, с повторами сутки.":
        "Other systems hear about bonus movements without polling: signed events to an "
        "https URL, in order per card, retried for a day.",
    "Подписка создана": "Subscription created",
    "Секрет подписи показан один раз — сохраните его у получателя сейчас. Потерянный секрет "
    "не восстановить: создайте подписку заново.":
        "The signing secret is shown once: store it with the receiver now. A lost secret "
        "cannot be recovered: create the subscription again.",
    "Неудач подряд": "Failures in a row", "Последняя доставка": "Last delivery",
    "Сохранить события": "Save events", "приостановлена": "paused",
    "Журнал": "Log", "Приостановить": "Pause", "Возобновить": "Resume", "Удалить": "Delete",
    "Подписок пока нет.": "No subscriptions yet.", "Новая подписка": "New subscription",
    "Адрес получателя": "Receiver URL",
    "Только https://, не адрес закрытой сети.": "https:// only, not a private network address.",
    "Описание": "Description", "Создать подписку": "Create subscription",
    "Журнал доставки": "Delivery log", "Когда": "When", "Событие": "Event",
    "Код ответа": "Response code", "Время ответа, мс": "Response time, ms",
    "Доставка": "Delivery", "Следующая попытка": "Next retry",
    "доставлено": "delivered", "ждёт повтора": "waiting for a retry",
    "не доставлено": "not delivered", "Отправить снова": "Send again",
    "Попыток доставки пока не было.": "No delivery attempts yet.",
    "Отправить событие снова": "Send an event again", "Id события (evt_…)": "Event id (evt_…)",
    "С тем же id и телом: получатель узнает повтор.":
        "With the same id and body: the receiver knows it for a repeat.",
    "Отправить": "Send", "удалить подписку": "delete the subscription",
    "Нет такой подписки.": "No such subscription.",
    "События подписки сохранены.": "The subscription's events are saved.",
    "Подписка приостановлена: события ждут, ни одно не потеряно.":
        "Subscription paused: events wait, none is lost.",
    "Подписка возобновлена: ожидавшие события уходят сейчас.":
        "Subscription resumed: the waiting events go now.",
    "Подписка удалена вместе с журналом.": "Subscription deleted with its log.",
    "Событие поставлено в очередь на повторную отправку.": "The event is queued to be sent again.",
}
