"""Tables. Money is integer kopecks (`*_kop`); times are naive UTC.

Entries are append-only: nothing updates or deletes an Entry. Card.balance_kop and
Lot.remaining_kop are caches written in the same transaction as the entries that
move them, so they always equal what the entries say.
"""
from __future__ import annotations

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from api.clock import utcnow
from api.db import db


class BaseModel(Model):
    class Meta:
        database = db


class Portal(BaseModel):
    """A Bitrix24 portal: the tenant. Keyed by member_id, which survives renames."""

    member_id = CharField(max_length=64, unique=True)
    domain = CharField(max_length=255, null=True)
    client_endpoint = CharField(max_length=255, null=True)
    # The OAuth server that vouches for this portal (https://oauth.bitrix.info/rest/ or
    # https://oauth.bitrix24.tech/rest/), as its app.info proof named it: refreshes go there.
    server_endpoint = CharField(max_length=255, null=True)
    access_token = TextField(null=True)
    refresh_token = TextField(null=True)
    token_expires_at = BigIntegerField(null=True)
    application_token = CharField(max_length=128, null=True)
    installed_by_user_id = IntegerField(null=True)
    # active: installed; uninstalled: ledger kept as a financial record;
    # api: created for the REST API alone, not (yet) installed in Bitrix24.
    status = CharField(max_length=16, default="api")
    timezone = CharField(max_length=64, default="Europe/Moscow")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class ApiKey(BaseModel):
    portal = ForeignKeyField(Portal, backref="api_keys", on_delete="CASCADE")
    prefix = CharField(max_length=16)  # shown in listings so a key can be told apart
    key_hash = CharField(max_length=64, unique=True)  # sha256 hex; the key itself is never stored
    label = CharField(max_length=100, null=True)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    scopes = CharField(max_length=100, default="read write")  # api.auth.SCOPES, space-separated


class ProgramRules(BaseModel):
    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    data = TextField()  # JSON, validated by api.ledger.rules
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(max_length=200, null=True)


class Card(BaseModel):
    portal = ForeignKeyField(Portal, backref="cards", on_delete="CASCADE", index=False)
    number = CharField(max_length=20)  # E.164 digits, no plus: 79161234567
    contact_id = BigIntegerField(null=True)
    last_name = CharField(max_length=100, null=True)
    first_name = CharField(max_length=100, null=True)
    middle_name = CharField(max_length=100, null=True)
    client_category = CharField(max_length=100, null=True)
    email = CharField(max_length=254, null=True)
    birthdate = DateField(null=True)
    manager_id = IntegerField(null=True)  # the contact's ASSIGNED_BY_ID
    status = CharField(max_length=16, default="active")
    tier = CharField(max_length=64)
    balance_kop = BigIntegerField(default=0)
    purchases_kop = BigIntegerField(default=0)
    # Names and e-mail case-folded in Python: SQLite's LOWER() folds ASCII only.
    search_text = CharField(max_length=600, default="")
    # month * 100 + day of the birthdate: a day's birthdays are one indexed lookup.
    birthday_md = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("portal", "number"), True),
            # NULLs don't collide, so cards made without a contact can coexist.
            (("portal", "contact_id"), True),
            (("portal", "birthday_md"), False),
        )


class Operation(BaseModel):
    """One idempotent write: the key, a hash of its inputs, and the answer it gave.

    `scope` keeps namespaces apart: "client" holds a caller's key exactly as given,
    "system" the ledger's own causes (welcome, birthday, expiry runs), so no client key
    can take or block one of ours. `folded` is 0 until api.ledger.rollups has added the
    operation's entries to the program's numbers (after commit, exactly once).
    """

    portal = ForeignKeyField(Portal, on_delete="CASCADE", index=False)
    scope = CharField(max_length=16, default="client")
    key = CharField(max_length=200)
    kind = CharField(max_length=20)
    request_hash = CharField(max_length=64)
    card = ForeignKeyField(Card, null=True, on_delete="CASCADE")
    result = TextField()  # JSON of the first answer, replayed on a repeat
    folded = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("portal", "scope", "key"), True),)


class Entry(BaseModel):
    portal = ForeignKeyField(Portal, on_delete="CASCADE", index=False)
    card = ForeignKeyField(Card, backref="entries", on_delete="CASCADE",
                           index=False)
    operation = ForeignKeyField(Operation, null=True, on_delete="CASCADE")
    idempotency_key = CharField(max_length=220)
    kind = CharField(max_length=16)  # see api.ledger.kinds
    amount_kop = BigIntegerField()  # signed: + credits the card, - debits it
    balance_after_kop = BigIntegerField()
    reference = CharField(max_length=100, null=True)  # deal or order id
    purchase_kop = BigIntegerField(null=True)  # the order amount behind an accrual or debit
    percent = DecimalField(max_digits=5, decimal_places=2, null=True, auto_round=False)
    reverses = ForeignKeyField("self", null=True, backref="reversals", on_delete="CASCADE")
    actor = CharField(max_length=200)
    comment = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("portal", "idempotency_key"), True),
            (("card", "id"), False),
            (("card", "reference", "kind"), False),
        )


class Lot(BaseModel):
    """Bonuses credited together, spent oldest-first, expiring together."""

    card = ForeignKeyField(Card, backref="lots", on_delete="CASCADE", index=False)
    entry = ForeignKeyField(Entry, unique=True, on_delete="CASCADE")
    amount_kop = BigIntegerField()
    remaining_kop = BigIntegerField()
    expires_at = DateTimeField()

    class Meta:
        # By expiry only live lots are asked for: the partial "lot_live_expires_at"
        # (migration 0005) serves them.
        indexes = ((("card", "expires_at"), False),)


class Allocation(BaseModel):
    """How much of which lot an entry took (or gave back): makes reversal and expiry exact."""

    entry = ForeignKeyField(Entry, backref="allocations", on_delete="CASCADE")
    lot = ForeignKeyField(Lot, backref="allocations", on_delete="CASCADE")
    amount_kop = BigIntegerField()  # signed like the entry


class SchemaVersion(BaseModel):
    name = CharField(max_length=100, unique=True)
    applied_at = DateTimeField(default=utcnow)


TABLES = [Portal, ApiKey, ProgramRules, Card, Operation, Entry, Lot, Allocation]


class QueueRow(BaseModel):
    """A row that waits to be worked on and is retried with backoff (background.queue claims it):
    activity runs, the Bitrix24 outbox, notifications. Subclasses add what they carry."""

    status = CharField(max_length=16, default="pending")
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    claimed_until = DateTimeField(null=True)  # another worker's claim, until it lapses
    # The worker thread holding the claim (background.leases: renewed while it lives).
    claimed_by = CharField(max_length=100, null=True)
    created_at = DateTimeField(default=utcnow)
    # QUERY_LIMIT_EXCEEDED refusals: paced and retried within seconds, counted apart from
    # the failures that `attempts` bounds (background.pacing caps them too).
    throttles = IntegerField(default=0)


class ActivityRun(QueueRow):
    """One delivery of a business-process activity, keyed by its event_token."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    token_hash = CharField(max_length=64)  # sha256 of event_token: tokens are long
    event_token = TextField()
    code = CharField(max_length=128)
    workflow_id = CharField(max_length=64, null=True)
    document_id = TextField()  # JSON list of three
    properties = TextField()  # JSON
    user_id = IntegerField(null=True)  # the run-as user
    last_error = TextField(null=True)
    # status (QueueRow): pending, done; failed: a dead letter (shown on the Health page)
    return_values = TextField(null=True)  # JSON sent with bizproc.event.send
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("portal", "token_hash"), True),
            (("status", "next_attempt_at"), False),
        )


class Outbox(QueueRow):
    """Bitrix24 writes committed with the ledger change that causes them; delivered later.

    `calls` is {key: [method, params]}; `done` records the keys already delivered so a
    retry resends only what failed.
    """

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    key = CharField(max_length=200)  # one row per cause: a repeat enqueue is a no-op
    calls = TextField()
    done = TextField(default="{}")
    # status (QueueRow): pending, sent, failed
    last_error = TextField(null=True)
    sent_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("portal", "key"), True),
            (("status", "next_attempt_at"), False),
        )


class B24Event(BaseModel):
    """A contact or deal event received, kept until the sync has handled it."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    event = CharField(max_length=64)
    entity_id = BigIntegerField()
    received_at = DateTimeField(default=utcnow)
    processed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("processed_at", "id"), False),)


B24_TABLES = [ActivityRun, Outbox, B24Event]


class NotificationSettings(BaseModel):
    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    data = TextField()  # JSON, validated by notifications.settings; keys never leave masked
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(max_length=200, null=True)


class Notification(QueueRow):
    """Every message to a client or manager: what, to whom, and what became of it."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE", index=False)
    card = ForeignKeyField(Card, null=True, backref="notifications", on_delete="SET NULL",
                           index=False)
    key = CharField(max_length=220)  # one per cause and channel: never sent twice
    channel = CharField(max_length=8)  # email, sms, chat
    template = CharField(max_length=64)
    recipient = CharField(max_length=254)
    subject = CharField(max_length=500, null=True)
    body = TextField()
    # status (QueueRow): pending → sending → sent | failed; `unknown` when a send was cut
    # off mid-flight and resending could deliver it twice (SMS has no idempotency key).
    provider_message_id = CharField(max_length=100, null=True)
    error = TextField(null=True)
    sent_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("portal", "key"), True),
            (("status", "next_attempt_at"), False),
            (("card", "id"), False),
        )


NOTIFY_TABLES = [NotificationSettings, Notification]



class Contact(BaseModel):
    """Our copy of a Bitrix24 contact, card or no card (the birthday run needs both)."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    contact_id = BigIntegerField()
    last_name = CharField(max_length=100, null=True)
    first_name = CharField(max_length=100, null=True)
    middle_name = CharField(max_length=100, null=True)
    phone = CharField(max_length=40, null=True)
    email = CharField(max_length=254, null=True)
    birthdate = DateField(null=True)
    birthday_md = IntegerField(null=True)
    manager_id = IntegerField(null=True)
    synced_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("portal", "contact_id"), True),
            (("portal", "birthday_md"), False),
        )


class DailyRun(BaseModel):
    """A daily job finished for a portal's local date: it is not run again that day."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    job = CharField(max_length=32)
    day = DateField()
    finished_at = DateTimeField(default=utcnow)
    summary = TextField(null=True)

    class Meta:
        indexes = ((("portal", "job", "day"), True),)


class SchedulerLock(BaseModel):
    """Who runs the scheduler on this database: a lease the holder keeps renewing."""

    name = CharField(max_length=32, unique=True)
    holder = CharField(max_length=100)
    expires_at = DateTimeField()


SCHEDULER_TABLES = [Contact, DailyRun, SchedulerLock]


class DailyStat(BaseModel):
    """Per portal, UTC day and entry kind: sums kept in the same transaction as the
    entries, so the program's numbers never scan the ledger."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    day = DateField()
    kind = CharField(max_length=16)
    entries = IntegerField(default=0)
    amount_kop = BigIntegerField(default=0)
    purchase_kop = BigIntegerField(default=0)  # order amounts behind accruals
    bonus_orders = IntegerField(default=0)  # accruals of orders partly paid with bonuses
    bonus_order_kop = BigIntegerField(default=0)

    class Meta:
        indexes = ((("portal", "day", "kind"), True),)


class ClientMonth(BaseModel):
    """Purchases per card and calendar month: active and repeat clients without a scan."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    card = ForeignKeyField(Card, on_delete="CASCADE")
    month = DateField()  # the first day of the month
    purchases = IntegerField(default=0)

    class Meta:
        indexes = ((("portal", "month", "card"), True),)


class MonthStat(BaseModel):
    """Active (a purchase) and repeat (two or more) clients per portal and month."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    month = DateField()
    active = IntegerField(default=0)
    repeat = IntegerField(default=0)

    class Meta:
        indexes = ((("portal", "month"), True),)


class ExpiryDay(BaseModel):
    """Live bonuses per portal and expiry date (what will expire that day if unspent)."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    day = DateField()
    live_kop = BigIntegerField(default=0)

    class Meta:
        indexes = ((("portal", "day"), True),)


KPI_TABLES = [DailyStat, ClientMonth, MonthStat, ExpiryDay]


class PortalSettings(BaseModel):
    """Settings of the app's pages per portal (what non-admins may do there)."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    data = TextField()  # JSON, validated by pages.permissions
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(max_length=200, null=True)


PAGES_TABLES = [PortalSettings]


class PortalLane(BaseModel):
    """One portal's lane of background work (its Bitrix24 calls, or its UniSender sends):
    the worker holding it (a short lease), and why it waits or stopped: paused_until after
    throttling, an alert when the portal blocked us (OVERLOAD_LIMIT) or was deleted."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    lane = CharField(max_length=16)  # b24, unisender
    holder = CharField(max_length=100, null=True)
    lease_until = DateTimeField(null=True)
    paused_until = DateTimeField(null=True)
    alert_code = CharField(max_length=64, null=True)
    alert = TextField(null=True)
    alert_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("portal", "lane"), True),)


WORK_TABLES = [PortalLane]

# Every table, in creation order (tests truncate them all).
ALL_TABLES = [*TABLES, *B24_TABLES, *NOTIFY_TABLES, *SCHEDULER_TABLES, *KPI_TABLES,
              *PAGES_TABLES, *WORK_TABLES]


class SyncCursor(BaseModel):
    """Where an unfinished nightly contact sync of a portal stopped: the next run goes on
    after `after_id` instead of starting over at contact 0. Deleted when a pass completes."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    after_id = BigIntegerField(default=0)  # every contact up to this id has been applied
    contacts_seen = IntegerField(default=0)  # this pass so far, over all its runs
    started_at = DateTimeField(default=utcnow)  # when this pass began
    updated_at = DateTimeField(default=utcnow)


PORTAL_TABLES = [SyncCursor]
ALL_TABLES.append(SyncCursor)


class CardMark(BaseModel):
    """What happened to a card outside the ledger (api.merges, api.forget): merged into
    another card, its contact deleted in Bitrix24, anonymised. One mark per card and kind."""

    card = ForeignKeyField(Card, backref="marks", on_delete="CASCADE")
    kind = CharField(max_length=16)  # merged, contact_deleted, anonymised
    other = ForeignKeyField(Card, null=True, backref="absorbed", on_delete="SET NULL")
    note = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("card", "kind"), True),)


class OfflineQueue(BaseModel):
    """The Bitrix24 offline-event batch reserved for us (event.offline.get clear=0) and not
    yet confirmed: after a crash the next tick asks for the same process_id again."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    process_id = CharField(max_length=64, null=True)
    updated_at = DateTimeField(default=utcnow)


class AuditEntry(BaseModel):
    """Append-only: who (Bitrix24 user, API key, CLI user) did what to money, rules,
    settings, access or a card, when and from where. Never updated or deleted."""

    portal = ForeignKeyField(Portal, null=True, on_delete="CASCADE", index=False)
    created_at = DateTimeField(default=utcnow)
    actor = CharField(max_length=200)
    action = CharField(max_length=100)
    target = CharField(max_length=100, null=True)  # "card:17": an id, never a phone
    source = CharField(max_length=100, null=True)  # IP address, or "cli"
    details = TextField(null=True)  # JSON

    class Meta:
        indexes = ((("portal", "id"), False), (("portal", "action", "id"), False))


DATA_TABLES = [CardMark, OfflineQueue, AuditEntry]
ALL_TABLES += DATA_TABLES


class ClientSite(BaseModel):
    """A portal's web site where clients log in themselves (api.client_login). The
    public endpoints have no API key: the site id, which is not a secret, names the portal."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    site_id = CharField(max_length=40, unique=True)
    enabled = BooleanField(default=True)
    origins = TextField(default="[]")  # JSON list of "https://host[:port]" allowed by CORS
    updated_at = DateTimeField(default=utcnow)


class ClientOrigin(BaseModel):
    """One allowed origin of a site: a CORS preflight carries only its Origin."""

    site = ForeignKeyField(ClientSite, backref="origin_rows", on_delete="CASCADE")
    origin = CharField(max_length=200, index=True)


class LoginCode(BaseModel):
    """A one-time code sent by SMS. Only an HMAC of it is kept. A phone without a card
    gets a row too (card null, nothing sent), so both answers look and cost the same."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    phone = CharField(max_length=20)
    card = ForeignKeyField(Card, null=True, on_delete="CASCADE")
    code_hash = CharField(max_length=64)
    attempts = IntegerField(default=0)
    expires_at = DateTimeField()
    consumed_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("portal", "phone", "id"), False),)


class Throttle(BaseModel):
    """A fixed-window counter (api.throttle): shared by every worker process."""

    key = CharField(max_length=200, unique=True)
    window_start = DateTimeField()
    count = IntegerField(default=0)


class WebhookSubscription(BaseModel):
    """Where a portal wants to hear about movements (api.webhooks)."""

    portal = ForeignKeyField(Portal, backref="webhooks", on_delete="CASCADE")
    url = CharField(max_length=2000)
    secret = CharField(max_length=100)  # whsec_<base64>: needed in clear to sign; shown once
    events = TextField()  # JSON list of event types
    description = CharField(max_length=200, null=True)
    status = CharField(max_length=16, default="active")  # active, paused
    paused_reason = TextField(null=True)
    failures = IntegerField(default=0)  # failed attempts since the last success
    failing_since = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class WebhookEvent(BaseModel):
    """Something that happened, once per cause (`key`); its id is the receiver's dedupe key."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE", index=False)
    event_id = CharField(max_length=40, unique=True)
    key = CharField(max_length=220)
    type = CharField(max_length=32)
    card_number = CharField(max_length=20, null=True)
    data = TextField()  # JSON
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("portal", "key"), True),)


class WebhookDelivery(QueueRow):
    """One event to one subscription. `stream` (the card) orders them: a delivery waits
    until the earlier ones of its stream are done."""

    subscription = ForeignKeyField(WebhookSubscription, backref="deliveries",
                                   on_delete="CASCADE")
    event = ForeignKeyField(WebhookEvent, on_delete="CASCADE")
    stream = CharField(max_length=20, default="")
    # status (QueueRow): pending → sent | failed (retried for a day, then given up)
    last_status = IntegerField(null=True)
    last_error = TextField(null=True)
    sent_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("subscription", "event"), True),
            (("status", "subscription", "stream", "id"), False),
        )


class WebhookAttempt(BaseModel):
    """The delivery log: every try, its HTTP status and how long the receiver took."""

    subscription = ForeignKeyField(WebhookSubscription, on_delete="CASCADE")
    delivery = ForeignKeyField(WebhookDelivery, backref="attempt_rows", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    status_code = IntegerField(null=True)
    response_ms = IntegerField(null=True)
    error = TextField(null=True)

    class Meta:
        indexes = ((("subscription", "id"), False),)


class ProductRuleSet(BaseModel):
    """Earning rules per product and section of a deal's rows (api.product_rules)."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    data = TextField()  # JSON {"rules": [...]}
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(max_length=200, null=True)


class Hold(BaseModel):
    """Bonuses reserved for a payment not yet approved (api.ledger.holds). An active hold
    makes them unspendable until it is captured, released or its time is up."""

    portal = ForeignKeyField(Portal, on_delete="CASCADE")
    card = ForeignKeyField(Card, backref="holds", on_delete="CASCADE", index=False)
    reference = CharField(max_length=100, null=True)
    amount_kop = BigIntegerField()
    captured_kop = BigIntegerField(default=0)
    status = CharField(max_length=16, default="active")  # active, captured, released
    expires_at = DateTimeField()
    capture_entry = ForeignKeyField(Entry, null=True, on_delete="SET NULL")
    actor = CharField(max_length=200)
    created_at = DateTimeField(default=utcnow)
    closed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("card", "status", "expires_at"), False),)


FOLLOW_TABLES = [ClientSite, ClientOrigin, LoginCode, Throttle, WebhookSubscription,
                 WebhookEvent, WebhookDelivery, WebhookAttempt, ProductRuleSet, Hold]
ALL_TABLES += FOLLOW_TABLES


class Heartbeat(BaseModel):
    """The scheduler's last sign of life, written by the lock holder every run (`doctor`)."""

    name = CharField(max_length=32, unique=True)
    holder = CharField(max_length=100)
    job = CharField(max_length=32)
    beat_at = DateTimeField()


OPS_TABLES = [Heartbeat]
ALL_TABLES += OPS_TABLES
class SettingsVersion(BaseModel):
    """A token that changes, in the same transaction, whenever one of the portal's
    settings documents (rules, notification settings, page settings) is saved: the
    per-process caches of api.versions are keyed by it. No row: nothing saved yet."""

    portal = ForeignKeyField(Portal, unique=True, on_delete="CASCADE")
    token = BigIntegerField()


LEDGER_TABLES = [SettingsVersion]
ALL_TABLES.extend(LEDGER_TABLES)
