"""Real endpoints on loopback: an SMTP server (aiosmtpd) and an HTTP server standing where Slack's
incoming webhook would be. Database fixtures come from the loaders' suite."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from testkit.fixtures import free_port


class WebhookReceiver:
    """Records every POST; answers with `status` after `delay` seconds."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "body": json.loads(body or b"null")})
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout case): what it sent is recorded above

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class MailSink:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@contextmanager
def running_mail_sink() -> Iterator[MailSink]:
    """A MailSink served by an SMTP server on a free loopback port (``sink.port``) while the block runs."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp():
    with running_mail_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def receivers():
    """A webhook receiver and an SMTP server shared by a module's tests (the scenario modules count what
    arrived across their runs)."""
    webhook = WebhookReceiver()
    try:
        with running_mail_sink() as sink:
            yield webhook, sink
    finally:
        webhook.close()
