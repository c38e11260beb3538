"""One access-log line per request for the hub-side tornado services."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tornado import web


def request_logger(log: logging.Logger, warn_from: int) -> Callable[[web.RequestHandler], None]:
    """tornado's `log_function`: status, method, path and time; WARNING from status
    `warn_from` up, DEBUG below (the path only: query strings stay out of the log)."""

    def log_request(handler: web.RequestHandler) -> None:
        status = handler.get_status()
        log.log(
            logging.WARNING if status >= warn_from else logging.DEBUG,
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )

    return log_request
