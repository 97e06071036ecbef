"""gunicorn settings for the loyalty web service.

    gunicorn -c deploy/gunicorn.conf.py "api:create_app()"

Run from the project directory. Logs (error and access) go to stderr in the app's own
format (LOYALTY_LOG_LEVEL, LOYALTY_LOG_FORMAT=json), secrets masked: api/weblog.py.
The scheduler is NOT started here: run `flask --app api scheduler run` beside it.
"""
import gc
import os

bind = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000")  # the proxy in front serves https
workers = int(os.environ.get("LOYALTY_WORKERS", "4"))
timeout = 30  # a request never waits on Bitrix24 or UniSender: the scheduler does that
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
# client, request line, status, bytes, milliseconds, user agent, our request id
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s" id=%({x-request-id}o)s'
logger_class = "api.weblog.GunicornLogger"


def post_worker_init(worker):
    """The app is loaded: what it built (modules, routes, schemas, templates) lives as long
    as the worker. Frozen out of the collector's generations, it is no longer walked by
    every collection: 2.8 % of an accrual's instructions (issue 17, callgrind)."""
    gc.freeze()
