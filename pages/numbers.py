"""The program's numbers: a period beside the one before, three charts, the clients
behind each figure, and the period's movements as CSV. Admins and those allowed to
view cards; computed from rollups (api.kpis), so it costs the same for any ledger size.
"""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from flask import Response, g, request

from api import kpis
from api.clock import utcnow
from api.data.csvout import safe
from api.ledger.money import format_kop
from api.models import Card, Entry
from pages import charts, roles, web
from pages.frame import viewer_required

bp = web.blueprint("pages_numbers", __name__, url_prefix="/b24/app/numbers")
CSV_ROWS_MAX = 1_000_000


def _period() -> tuple[date, date]:
    """?start=YYYY-MM-DD&end=YYYY-MM-DD, or this month."""
    try:
        start = date.fromisoformat(request.args.get("start", ""))
        end = date.fromisoformat(request.args.get("end", ""))
        if start < end and (end - start).days <= 366:
            return start, end
    except ValueError:
        pass
    return kpis.month_bounds(utcnow().date())


def _before(start: date, end: date) -> tuple[date, date]:
    if start.day == 1 and end == kpis.month_bounds(start)[1]:
        return kpis.month_bounds(start - timedelta(days=1))
    return start - (end - start), start


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.VIEW_CARDS)
def show():
    start, end = _period()
    now, prev = kpis.period(g.portal, start, end), kpis.period(g.portal, *_before(start, end))
    weeks = kpis.weekly(g.portal, start, end)
    tiers = kpis.tiers(g.portal)
    expiring = kpis.expiring(g.portal, days=90)
    money = lambda kop: web.money(kop)  # noqa: E731
    return web.render(
        "numbers.html", active="numbers", start=start, end=end, now=now, prev=prev,
        weekly_chart=charts.bars("Начислено и списано по неделям",
                                 [f"{w:%d.%m}" for w, _, _ in weeks],
                                 [("начислено", [a for _, a, _ in weeks]),
                                  ("списано", [d for _, _, d in weeks])], money),
        tier_chart=charts.bars("Клиенты по уровням", list(tiers),
                               [("клиентов", list(tiers.values()))]),
        expiring_chart=charts.bars("Сгорит в ближайшие 90 дней", [f"{w:%d.%m}" for w, _ in expiring],
                                   [("сгорит", [k for _, k in expiring])], money),
        tiers=tiers)


@bp.route("/movements.csv", methods=["GET"])
@viewer_required
@roles.require(roles.VIEW_CARDS)
def movements_csv():
    """Every entry of the period, streamed: the file may be large, memory stays flat."""
    start, end = _period()
    rows = (Entry.select(Entry.id, Entry.created_at, Card.number, Entry.kind, Entry.amount_kop,
                         Entry.balance_after_kop, Entry.reference, Entry.actor, Entry.comment)
            .join(Card).where((Entry.portal == g.portal) & (Entry.created_at >= kpis._midnight(start))
                              & (Entry.created_at < kpis._midnight(end)))
            .order_by(Entry.id).limit(CSV_ROWS_MAX).tuples())

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "created_at_utc", "card", "kind", "amount", "balance_after",
                         "reference", "actor", "comment"])
        for row in rows.iterator():
            # Typed text (reference, actor, comment) may not run as a formula; amounts are ours.
            writer.writerow([row[0], row[1], row[2], row[3], format_kop(row[4]),
                             format_kop(row[5]), safe(row[6]), safe(row[7]), safe(row[8])])
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = f"movements-{start}-{end}.csv"
    return Response(generate(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
