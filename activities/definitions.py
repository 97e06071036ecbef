"""What the business-process designer shows: our activities, their inputs and outputs.

Codes never change: workflow templates refer to an app action by md5(client_id@CODE),
so a renamed code would orphan every template that uses it. An action and a robot of
one app cannot share a code, so each robot is the action's code plus ROBOT_SUFFIX.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ROBOT_SUFFIX = "_robot"
CONTACT_DOC = ["crm", "CCrmDocumentContact"]
DEAL_DOC = ["crm", "CCrmDocumentDeal"]


def prop(ru: str, en: str, type_: str = "string", *, required=False, default=None,
         options=None, description: tuple[str, str] | None = None) -> dict:
    spec = {"Name": {"ru": ru, "en": en}, "Type": type_, "Required": "Y" if required else "N",
            "Multiple": "N"}
    if default is not None:
        spec["Default"] = default
    if options:
        spec["Options"] = options
    if description:
        spec["Description"] = {"ru": description[0], "en": description[1]}
    return spec


COMMON_RETURNS = {
    "Success": prop("Успешно", "Success", "bool"),
    "Error": prop("Ошибка", "Error", "string"),
}
CARD_KEYS = {
    "ContactId": prop("ID контакта", "Contact ID", "int",
                      description=("По умолчанию: контакт документа или сделки",
                                   "Default: the document's contact or the deal's contact")),
    "Phone": prop("Телефон", "Phone"),
    "CardNumber": prop("Номер карты", "Card number"),
}


@dataclass(frozen=True)
class Activity:
    code: str
    name: tuple[str, str]
    description: tuple[str, str]
    properties: dict
    returns: dict
    documents: tuple = (CONTACT_DOC, DEAL_DOC)
    robot: bool = True  # also offered to deal automation rules
    extra: dict = field(default_factory=dict)

    def return_properties(self) -> dict:
        return {**COMMON_RETURNS, **self.returns}


ACTIVITIES = [
    Activity(
        "loyalty_card_create", ("Создать бонусную карту", "Create loyalty card"),
        ("Выдаёт карту лояльности по мобильному телефону контакта",
         "Issues a loyalty card from the contact's mobile phone"),
        {
            "ContactId": CARD_KEYS["ContactId"],
            "LastName": prop("Фамилия", "Last name"),
            "FirstName": prop("Имя", "First name"),
            "Phone": prop("Мобильный телефон", "Mobile phone"),
            "ClientCategory": prop("Категория клиента", "Client category"),
            "Email": prop("E-mail", "E-mail"),
            "Birthdate": prop("Дата рождения", "Birthdate", "date"),
            "NotifyManager": prop("Уведомить менеджера, если не хватает данных",
                                  "Notify the manager when data is missing", "bool", default="Y"),
        },
        {
            "CardNumber": prop("Номер карты", "Card number"),
            "Created": prop("Карта создана сейчас", "Created now", "bool"),
            "Balance": prop("Баланс", "Balance", "double"),
            "Tier": prop("Уровень", "Tier"),
        },
    ),
    Activity(
        "loyalty_card_info", ("Бонусная карта: баланс и статус", "Loyalty card: balance and status"),
        ("Находит карту по контакту, телефону или номеру", "Finds the card by contact, phone or number"),
        dict(CARD_KEYS),
        {
            "HasCard": prop("Карта есть", "Has card", "bool"),
            "CardNumber": prop("Номер карты", "Card number"),
            "Balance": prop("Баланс", "Balance", "double"),
            "Tier": prop("Уровень", "Tier"),
            "TotalPurchases": prop("Сумма покупок", "Total purchases", "double"),
        },
    ),
    Activity(
        "loyalty_bonus_accrue", ("Начислить бонусы", "Accrue bonuses"),
        ("Начисляет процент от суммы сделки по уровню клиента, один раз на сделку",
         "Accrues the tier's percent of the deal amount, once per deal"),
        {
            "DealId": prop("ID сделки", "Deal ID", "int",
                           description=("По умолчанию: сделка документа", "Default: the document's deal")),
            "ContactId": CARD_KEYS["ContactId"],
            "Amount": prop("Сумма покупки", "Purchase amount", "double",
                           description=("По умолчанию: сумма сделки", "Default: the deal's amount")),
        },
        {
            "Accrued": prop("Начислено", "Accrued", "double"),
            "Percent": prop("Процент", "Percent", "double"),
            "Balance": prop("Баланс", "Balance", "double"),
            "Tier": prop("Уровень", "Tier"),
            "AlreadyAccrued": prop("Уже было начислено", "Already accrued", "bool"),
            "Explanation": prop("Расчёт по товарам", "By product rules"),
        },
    ),
    Activity(
        "loyalty_bonus_debit", ("Списать бонусы с проверкой баланса", "Debit bonuses with a balance check"),
        ("Списывает бонусы, только если их хватает", "Debits bonuses only when the balance covers them"),
        {
            "Amount": prop("Сколько списать", "Amount to debit", "double", required=True),
            **CARD_KEYS,
            "DealId": prop("ID сделки", "Deal ID", "int"),
            "OrderAmount": prop("Сумма заказа", "Order amount", "double",
                                description=("Ограничивает долю оплаты бонусами",
                                             "Caps the share paid with bonuses")),
            "AllowPartial": prop("Списать сколько есть, если не хватает",
                                 "Debit what is available when short", "bool", default="N"),
        },
        {
            "Debited": prop("Списано", "Debited", "double"),
            "Balance": prop("Баланс", "Balance", "double"),
        },
    ),
    Activity(
        "loyalty_bonus_hold", ("Зарезервировать бонусы", "Hold bonuses"),
        ("Бонусы нельзя потратить, пока резерв не списан или не отменён",
         "The bonuses can't be spent until the hold is captured or released"),
        {
            "Amount": prop("Сколько зарезервировать", "Amount to hold", "double", required=True),
            **CARD_KEYS,
            "DealId": prop("ID сделки", "Deal ID", "int"),
            "ExpiresHours": prop("Срок резерва, часов", "Hold for, hours", "int", default="72"),
        },
        {
            "HoldId": prop("Номер резерва", "Hold ID"),
            "Held": prop("Зарезервировано", "Held", "double"),
            "Available": prop("Доступно", "Available", "double"),
            "ExpiresAt": prop("Резерв до (UTC)", "Held until (UTC)"),
        },
    ),
    Activity(
        "loyalty_bonus_capture", ("Списать зарезервированные бонусы", "Capture held bonuses"),
        ("Списывает резерв целиком или часть; остаток освобождается",
         "Debits all or part of a hold; the rest is freed"),
        {
            "HoldId": prop("Номер резерва", "Hold ID", "int", required=True),
            "Amount": prop("Сколько списать", "Amount", "double",
                           description=("По умолчанию: весь резерв", "Default: the whole hold")),
        },
        {
            "Debited": prop("Списано", "Debited", "double"),
            "Balance": prop("Баланс", "Balance", "double"),
        },
    ),
    Activity(
        "loyalty_bonus_release", ("Отменить резерв бонусов", "Release held bonuses"),
        ("Возвращает зарезервированные бонусы клиенту", "Gives the held bonuses back"),
        {"HoldId": prop("Номер резерва", "Hold ID", "int", required=True)},
        {
            "Released": prop("Отменён", "Released", "bool"),
            "Available": prop("Доступно", "Available", "double"),
        },
    ),
    Activity(
        "loyalty_notify_manager", ("Уведомить менеджера в чат", "Notify manager in chat"),
        ("Личное уведомление сотруднику Битрикс24", "A personal notification to a Bitrix24 user"),
        {
            "User": prop("Кому", "User", "user",
                         description=("По умолчанию: ответственный", "Default: the responsible")),
            "Message": prop("Сообщение", "Message", "text", required=True),
        },
        {"MessageId": prop("ID сообщения", "Message ID")},
    ),
    Activity(
        "loyalty_unisender_send", ("Отправить письмо/SMS через UniSender", "Send e-mail/SMS via UniSender"),
        ("Письмо или SMS клиенту по шаблону", "An e-mail or SMS to the client from a template"),
        {
            "Channel": prop("Канал", "Channel", "select", required=True, default="email",
                            options={"email": "E-mail", "sms": "SMS"}),
            "Recipient": prop("Получатель", "Recipient",
                              description=("По умолчанию: e-mail или мобильный контакта",
                                           "Default: the contact's e-mail or mobile")),
            "Subject": prop("Тема письма", "Subject"),
            "Body": prop("Текст", "Body", "text", required=True),
        },
        {"MessageId": prop("ID сообщения", "Message ID")},
    ),
]

BY_CODE = {a.code: a for a in ACTIVITIES}


def activity_for(code: str) -> Activity | None:
    """The activity a handler code names: its own code or its robot's."""
    base = code[: -len(ROBOT_SUFFIX)] if code.endswith(ROBOT_SUFFIX) else code
    return BY_CODE.get(base)


def descriptor(activity: Activity, handler_url: str, auth_user_id: int, *, robot: bool) -> dict:
    """The fields of bizproc.activity.add / bizproc.robot.add (also the update FIELDS)."""
    fields = {
        "HANDLER": handler_url,
        "AUTH_USER_ID": auth_user_id,
        "USE_SUBSCRIPTION": "Y",  # send Y explicitly: an empty value lets designers switch it off
        "NAME": {"ru": activity.name[0], "en": activity.name[1]},
        "DESCRIPTION": {"ru": activity.description[0], "en": activity.description[1]},
        "PROPERTIES": activity.properties,
        "RETURN_PROPERTIES": activity.return_properties(),
    }
    fields["FILTER"] = {"INCLUDE": [DEAL_DOC] if robot else list(activity.documents)}
    return fields
