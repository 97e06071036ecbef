"""«Данные»: import clients from a CSV (dry run, its report, then apply), the exports,
and the audit trail. Admins only (roles.MANAGE): an import writes money.

The uploaded file is kept under the instance folder by its SHA-256 (per portal), so the
apply step and the report download name the very file the dry run read; nothing else
can be named there (the digest is checked to be 64 hex digits).
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import date, timedelta

from flask import Response, current_app, g, request, stream_template, stream_with_context

from api.data import audit, csvout, exports, forget, imports, merges
from api.data.csvsource import SourceError
from api.db import connection
from api.ledger.errors import LedgerError
from pages import roles, web
from pages.frame import PageError, viewer_required

bp = web.blueprint("pages_data", __name__, url_prefix="/b24/app/data")
UPLOAD_MAX_BYTES = 50 * 1024 * 1024  # about 500,000 lines
AUDIT_SHOWN = 50
KEEP_S = 24 * 3600
PROGRESS_LINES = 5_000
DIGEST = re.compile(r"[0-9a-f]{64}")


def _folder() -> str:
    path = current_app.config.get("IMPORT_FOLDER") or os.path.join(current_app.instance_path,
                                                                   "imports")
    os.makedirs(path, exist_ok=True)
    return path


def _sweep(now_s: float) -> None:
    """Files hold clients' personal data: none outlives a day unapplied."""
    for name in os.listdir(_folder()):
        path = os.path.join(_folder(), name)
        if now_s - os.path.getmtime(path) > KEEP_S:
            os.remove(path)


def _path(digest: str) -> str:
    if not DIGEST.fullmatch(digest or ""):
        raise PageError(404, "Файл импорта не найден: загрузите его снова.")
    path = os.path.join(_folder(), f"{g.portal.id}-{digest}.csv")
    if not os.path.exists(path):
        raise PageError(404, "Файл импорта не найден: загрузите его снова.")
    return path


def _categories() -> list[str]:
    text = web.form_text("categories") or request.args.get("categories", "")[:1000]
    return [c.strip() for c in text.split(",") if c.strip()]


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def show():
    today = date.today()
    trail = list(audit.entries(g.portal).limit(AUDIT_SHOWN))
    return web.render("data.html", active="data", trail=trail, report=None,
                      start=today.replace(day=1), end=today)


@bp.route("/import", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def upload():
    """Keep the file, run the dry run, show what would happen."""
    request.max_content_length = UPLOAD_MAX_BYTES
    upload_ = request.files.get("file")
    if upload_ is None or not upload_.filename:
        raise PageError(422, "Выберите CSV-файл.")
    content = upload_.read(UPLOAD_MAX_BYTES + 1)
    if len(content) > UPLOAD_MAX_BYTES:
        raise PageError(413, "Файл больше 50 МБ: разделите его на части.")
    digest = hashlib.sha256(content).hexdigest()
    _sweep(time.time())
    with open(os.path.join(_folder(), f"{g.portal.id}-{digest}.csv"), "wb") as out:
        out.write(content)
    return _dry_run(digest, _categories())


def _dry_run(digest: str, categories: list[str]):
    with open(_path(digest), "rb") as source:
        try:
            report = imports.run(g.portal, source, apply=False, actor=g.viewer.actor,
                                 categories=categories)
        except SourceError as exc:
            raise PageError(422, str(exc))
    joined = ", ".join(categories)
    return web.render("data.html", active="data", trail=[], report=report,
                      apply_url=web.page_url("pages_data.apply", digest=digest),
                      report_url=web.page_url("pages_data.report_csv", digest=digest,
                                              categories=joined, _get=1),
                      hidden={"categories": joined}, start=date.today(), end=date.today())


@bp.route("/import/<digest>/apply", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def apply(digest: str):
    categories = _categories()
    if not web.confirmed():
        return web.confirm("Импорт клиентов", [("Файл", digest[:12] + "…")],
                           web.page_url("pages_data.apply", digest=digest),
                           {"categories": ", ".join(categories)}, web.page_url("pages_data.show"))
    path = _path(digest)
    # A long import shows its progress as it goes: the page is streamed, a line per
    # PROGRESS_LINES lines of the file; reloading it finds the file gone (applied).
    return stream_template("pages/data_progress.html", active="data",
                           progress=_applying(g.portal, path, digest, g.viewer.actor, categories))


def _applying(portal, path: str, digest: str, actor: str, categories: list[str]):
    with connection(), open(path, "rb") as source:
        dialect, outcomes = imports.outcomes_of(portal, source, apply=True, actor=actor,
                                                categories=categories)
        report = imports.Report(dialect, True)
        for outcome, brings in outcomes:
            report.add(outcome, brings)
            if report.lines % PROGRESS_LINES == 0:
                yield f"{report.lines:,} строк обработано…"
        os.remove(path)  # applied: the personal data it held is in the cards now
        audit.record(portal, actor, "data.import", source=request.remote_addr,
                     details={"file": digest[:12], "counts": dict(report.counts)})
    yield "Импорт выполнен. " + report.summary()


@bp.route("/import/<digest>/report.csv", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def report_csv(digest: str):
    """Every line's outcome, decided again by a dry run as the file is streamed out."""
    path, portal, actor, categories = _path(digest), g.portal, g.viewer.actor, _categories()

    def rows():
        with connection(), open(path, "rb") as source:
            _, outcomes = imports.outcomes_of(portal, source, apply=False, actor=actor,
                                              categories=categories)
            for outcome, _ in outcomes:
                yield [csvout.safe(v) for v in imports.report_row(outcome)]

    return _csv(f"import-report-{digest[:12]}.csv", imports.REPORT_HEADER, rows(),
                from_the_base=False)


def _csv(name: str, header, rows, *, from_the_base: bool = True) -> Response:
    # Reading the client base out is an act on personal data (152-FZ): who, when, what.
    # An import's report only says what would become of the lines of the admin's own file.
    if from_the_base:
        audit.record(g.portal, g.viewer.actor, "data.export", source=request.remote_addr,
                     details={"file": name})
    return Response(stream_with_context(csvout.pieces(header, rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _crm_run(field: str, categories: list[str], apply: bool):
    from activities.b24client import B24Error
    from scheduler import crm_import

    try:
        return crm_import.run(g.portal, web.b24_settings(), field, apply=apply,
                              actor=g.viewer.actor, categories=categories,
                              session=current_app.extensions.get("b24_session"))
    except LedgerError as exc:
        raise PageError(422, exc.message)
    except B24Error as exc:
        raise PageError(502, f"Битрикс24 не ответил: {exc.code} {exc.description}")


@bp.route("/import-crm", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def import_crm():
    """A numeric contact field as the source: the dry run over every contact."""
    field, categories = web.form_text("field", 64), _categories()
    report = _crm_run(field, categories, apply=False)
    return web.render("data.html", active="data", trail=[], report=report,
                      apply_url=web.page_url("pages_data.apply_crm"), report_url=None,
                      hidden={"field": field, "categories": ", ".join(categories)},
                      start=date.today(), end=date.today())


@bp.route("/import-crm/apply", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def apply_crm():
    field, categories = web.form_text("field", 64), _categories()
    if not web.confirmed():
        return web.confirm("Импорт баллов из поля контакта", [("Поле", field)],
                           web.page_url("pages_data.apply_crm"),
                           {"field": field, "categories": ", ".join(categories)},
                           web.page_url("pages_data.show"))
    report = _crm_run(field, categories, apply=True)
    audit.record(g.portal, g.viewer.actor, "data.import", source=request.remote_addr,
                 details={"field": field, "counts": dict(report.counts)})
    return web.redirect_to("pages_data.show", "imported", detail=report.summary())


@bp.route("/reconcile", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def reconcile_now():
    """Compare our card, balance and tier with every contact now; show what was repaired."""
    from activities.b24client import B24Error
    from scheduler import reconcile

    try:
        result = reconcile.reconcile(g.portal, web.b24_settings(), actor=g.viewer.actor,
                                     session=current_app.extensions.get("b24_session"))
    except B24Error as exc:
        raise PageError(502, f"Битрикс24 не ответил: {exc.code} {exc.description}")
    return web.render("data.html", active="data", report=None, reconciled=result,
                      trail=list(audit.entries(g.portal).limit(AUDIT_SHOWN)),
                      start=date.today().replace(day=1), end=date.today())


def _card(number: str):
    from api.ledger.cards import find_by_phone

    try:
        return find_by_phone(g.portal, number)
    except LedgerError as exc:
        raise PageError(404, exc.message)


def _described(card) -> str:
    name = " ".join(p for p in (card.last_name, card.first_name) if p) or "—"
    return f"#{card.id} {card.number}, {name}, {web.money(card.balance_kop)} бонусов, {card.tier}"


@bp.route("/cards/<number>/merge", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def merge(number: str):
    """The client's page: "merge into" another card, confirmed with both cards shown."""
    source, target = _card(number), _card(web.form_text("into", 40))
    if not web.confirmed():
        return web.confirm("Объединить карты", [("Закрыть карту", _described(source)),
                                                ("Перенести на карту", _described(target))],
                           web.page_url("pages_data.merge", number=source.number),
                           {"into": target.number},
                           web.page_url("pages_clients.show", number=source.number))
    try:
        merges.merge_cards(g.portal, source, target, actor=g.viewer.actor)
    except LedgerError as exc:
        raise PageError(409, exc.message)
    return web.redirect_to("pages_clients.show", "merged", number=target.number)


@bp.route("/cards/<number>/forget", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def forget_client(number: str):
    """152-FZ: erase the client's personal data; the ledger stays under a pseudonym."""
    card, reason = _card(number), web.form_text("reason", forget.REASON_MAX_LEN)
    if not reason:
        raise PageError(422, "Укажите основание (номер заявления).")
    if not web.confirmed():
        return web.confirm("Забыть клиента", [("Карта", _described(card)), ("Основание", reason)],
                           web.page_url("pages_data.forget_client", number=card.number),
                           {"reason": reason}, web.page_url("pages_clients.show", number=card.number))
    forget.anonymise(g.portal, card.number, actor=g.viewer.actor, reason=reason,
                     source=request.remote_addr)
    return web.redirect_to("pages_data.show", "forgotten")


@bp.route("/cards.csv", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def cards_csv():
    portal = g.portal

    def rows():
        with connection():
            yield from exports.card_rows(portal)
    return _csv("cards.csv", exports.CARD_HEADER, rows())


@bp.route("/movements.csv", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def movements_csv():
    try:
        start = date.fromisoformat(request.args.get("start", ""))
        end = date.fromisoformat(request.args.get("end", ""))
    except ValueError:
        raise PageError(422, "Укажите период: даты начала и конца.")
    if not date(2000, 1, 1) <= start <= end <= date(2100, 12, 31):
        raise PageError(422, "Период: с 2000 по 2100 год, начало не позже конца.")
    portal = g.portal

    def rows():
        with connection():
            yield from exports.movement_rows(portal, start, end + timedelta(days=1))
    return _csv(f"movements-{start}-{end}.csv", exports.MOVEMENT_HEADER, rows())


@bp.route("/audit.csv", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def audit_csv():
    portal = g.portal

    def rows():
        with connection():
            yield from map(audit.csv_row, audit.entries(portal))
    return _csv("audit.csv", audit.CSV_HEADER, rows())
