"""Hole 16: a client that disconnected in the middle of a webhook body left a full traceback
in the log. It is one warning line now, naming the source and the bytes read; nothing is
stored."""

from __future__ import annotations

import asyncio
import logging

from app.intake.models import Alert, Delivery
from tests.support.auth import WEBHOOK_TOKEN
from tests.support.wait import eventually


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if all(seen is not record for seen in self.records):  # it may come by both loggers
            self.records.append(record)


async def test_a_client_gone_mid_body_is_one_log_line(make_rig, db_url):
    records = Records()
    # uvicorn's own loggers may not propagate to the root: listen on both, once uvicorn has
    # configured its logging (which drops the handlers it finds on its loggers).
    watched = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    async with make_rig() as r:
        for logger in watched:
            logger.addHandler(records)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", r.server.port)
            writer.write(("POST /webhooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Authorization: Bearer {WEBHOOK_TOKEN}\r\n"
                          "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                          ).encode() + b'{"receiver": "' + b"r" * 86)
            await writer.drain()
            await asyncio.sleep(0.2)  # the receiver is waiting for the rest
            writer.transport.abort()

            def logged() -> list[logging.LogRecord]:
                return [x for x in records.records
                        if x.levelno >= logging.WARNING and x.name != "asyncio"]

            async def any_logged() -> list[logging.LogRecord]:
                return logged()

            await eventually(any_logged, timeout=5, what="a log line about the disconnect")
            await asyncio.sleep(0.3)  # anything else it would log comes now
            found = logged()
        finally:
            for logger in watched:
                logger.removeHandler(records)
    assert len(found) == 1, [(x.name, x.getMessage()) for x in found]
    [line] = found
    assert line.levelno == logging.WARNING and line.exc_info is None
    message = line.getMessage()
    assert "alertmanager" in message and "100 bytes" in message and "\n" not in message
    assert await r.rows(Delivery) == [] and await r.rows(Alert) == []
