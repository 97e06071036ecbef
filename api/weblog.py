"""gunicorn's error and access logs through the same setup as the app (api.logs): one
format, one level (LOYALTY_LOG_LEVEL), JSON when asked, secrets masked.

deploy/gunicorn.conf.py names this class as gunicorn's `logger_class`.
"""
from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from api import logs


class GunicornLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        logs.configure_from_env()
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True  # to the root handler, which masks and formats
        self.error_log.setLevel(logging.NOTSET)  # LOYALTY_LOG_LEVEL on the root decides
