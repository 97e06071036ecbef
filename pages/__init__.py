"""The app's own pages inside Bitrix24 (admins: rules, notifications, clients, health)."""


def init_app(app) -> None:
    """Registers the pages' blueprints (filled in by the pages work)."""
