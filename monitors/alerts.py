"""Alert channels: a Slack incoming webhook and SMTP email. One message per run and channel, listing
new failures (with observed values and thresholds) and recoveries. A channel that fails is retried
with backoff, then reported; it never affects the stored results or the other channel."""

from __future__ import annotations

import html
import json
import logging
import os
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage

from monitors.store import Transition

log = logging.getLogger(__name__)

ICONS = {"error": ":red_circle:", "warn": ":large_orange_circle:", "pass": ":large_green_circle:"}
KIND_LABEL = {"new": "new", "worse": "worse", "repeat": "still failing", "recovered": "recovered"}


class DeliveryError(RuntimeError):
    pass


@dataclass
class AlertMessage:
    run_id: str
    project: str
    transitions: list[Transition]

    @property
    def failures(self) -> list[Transition]:
        return [t for t in self.transitions if t.kind != "recovered"]

    @property
    def recoveries(self) -> list[Transition]:
        return [t for t in self.transitions if t.kind == "recovered"]

    @property
    def subject(self) -> str:
        errors = sum(t.result.status == "error" for t in self.failures)
        warns = sum(t.result.status == "warn" for t in self.failures)
        parts = []
        if errors:
            parts.append(f"{errors} error{'s' * (errors != 1)}")
        if warns:
            parts.append(f"{warns} warning{'s' * (warns != 1)}")
        if self.recoveries:
            parts.append(f"{len(self.recoveries)} recovered")
        return f"[{self.project}] monitors: " + ", ".join(parts)

    @staticmethod
    def _line(t: Transition) -> str:
        r = t.result
        value = "n/a" if r.observed_value is None else f"{r.observed_value:g}"
        bounds = "; ".join(
            f"{level} {bound}" for level, bound in (("warn", r.warn_threshold), ("error", r.error_threshold)) if bound
        )
        return f"{r.check_name}: {r.status.upper()} ({KIND_LABEL[t.kind]}), observed {value}" + (
            f", thresholds {bounds}" if bounds else ""
        )

    def text(self) -> str:
        lines = [self.subject, f"run {self.run_id}", ""]
        if self.failures:
            lines.append("Failing:")
            lines += [f"  - {self._line(t)}" for t in self.failures]
        if self.recoveries:
            lines.append("Recovered:")
            lines += [f"  - {self._line(t)}" for t in self.recoveries]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        def rows(items: list[Transition]) -> str:
            out = []
            for t in items:
                r = t.result
                value = "n/a" if r.observed_value is None else f"{r.observed_value:g}"
                out.append(
                    "<tr>"
                    f"<td>{html.escape(r.check_name)}</td><td>{html.escape(r.status)}</td>"
                    f"<td>{html.escape(KIND_LABEL[t.kind])}</td><td>{html.escape(value)}</td>"
                    f"<td>{html.escape(r.warn_threshold or '')}</td><td>{html.escape(r.error_threshold or '')}</td>"
                    "</tr>"
                )
            return "".join(out)

        head = "<tr><th>check</th><th>status</th><th>change</th><th>observed</th><th>warn</th><th>error</th></tr>"
        return (
            f"<html><body><h2>{html.escape(self.subject)}</h2><p>run {html.escape(self.run_id)}</p>"
            f"<table border='1' cellpadding='4'>{head}{rows(self.failures)}{rows(self.recoveries)}</table>"
            "</body></html>"
        )

    def slack_payload(self) -> dict:
        lines = [f"{ICONS[t.result.status]} {self._line(t)}" for t in self.transitions]
        return {
            "text": self.subject,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run `{self.run_id}`"}]},
            ],
        }


class SlackChannel:
    name = "slack"

    def __init__(self, webhook_url: str, timeout: float = 10.0):
        self.webhook_url = webhook_url
        self.timeout = timeout

    def send(self, message: AlertMessage) -> None:
        body = json.dumps(message.slack_payload()).encode()
        request = urllib.request.Request(  # noqa: S310 - the webhook URL is operator configuration
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"Slack answered HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"Slack answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"Slack webhook unreachable: {getattr(exc, 'reason', exc)}") from None


class EmailChannel:
    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ):
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.user, self.password, self.timeout = user, password, timeout

    def send(self, message: AlertMessage) -> None:
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        email.set_content(message.text())
        email.add_alternative(message.html(), subtype="html")
        try:
            smtp_class = smtplib.SMTP_SSL if self.port == 465 else smtplib.SMTP
            with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
                if smtp_class is smtplib.SMTP:
                    smtp.ehlo()
                    if smtp.has_extn("starttls"):
                        smtp.starttls()
                        smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP delivery to {self.host}:{self.port} failed: {exc}") from None


class PrintChannel:
    """What --dry-run uses when no channel is configured: the message a fresh channel would get."""

    name = "dry-run"

    def send(self, message: AlertMessage) -> None:
        print(message.text())


def channels_from_env(env: dict[str, str] | None = None) -> list[SlackChannel | EmailChannel]:
    env = dict(os.environ if env is None else env)
    found: list[SlackChannel | EmailChannel] = []
    if env.get("SLACK_WEBHOOK_URL"):
        found.append(SlackChannel(env["SLACK_WEBHOOK_URL"]))
    if env.get("SMTP_HOST") and env.get("ALERT_EMAIL_TO"):
        found.append(
            EmailChannel(
                host=env["SMTP_HOST"],
                port=int(env.get("SMTP_PORT") or 587),
                sender=env.get("ALERT_EMAIL_FROM") or "telemed-elt@localhost",
                recipients=[addr.strip() for addr in env["ALERT_EMAIL_TO"].split(",") if addr.strip()],
                user=env.get("SMTP_USER") or None,
                password=env.get("SMTP_PASSWORD") or None,
            )
        )
    return found


def deliver(channel, message: AlertMessage, attempts: int = 3, backoff_s: float = 1.0) -> str | None:
    """Send with retries; None on success, else the last error (also logged)."""
    error = None
    for attempt in range(1, attempts + 1):
        try:
            channel.send(message)
            log.info("alert sent to %s (%d transitions)", channel.name, len(message.transitions))
            return None
        except DeliveryError as exc:
            error = str(exc)
            log.warning("alert to %s failed (attempt %d/%d): %s", channel.name, attempt, attempts, error)
            if attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    log.error("giving up on %s for this run: %s", channel.name, error)
    return error
