"""Alert channels: a Slack incoming webhook and SMTP email. One message per run and channel, listing
new failures (with observed values and thresholds) and recoveries. A channel that fails is retried
with backoff, then reported; it never affects the stored results or the other channel."""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import os
import smtplib
import ssl
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


class RefusedDelivery(DeliveryError):
    """The channel's configuration forbids sending (credentials without TLS): retrying cannot help."""


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
        ca_file: str | None = None,
        allow_plain_auth: bool = False,
    ):
        """``ca_file``: the CA to verify the server's certificate with (default: the system's). Credentials
        go only over TLS (port 465, or STARTTLS, verified); ``allow_plain_auth`` lets them go in clear to a
        relay on this machine's loopback, never to another host."""
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.user, self.password, self.timeout = user, password, timeout
        self.ca_file, self.allow_plain_auth = ca_file, allow_plain_auth

    def _tls(self) -> ssl.SSLContext:
        # smtplib's own default context checks no certificate: this one verifies the chain and the host name.
        return ssl.create_default_context(cafile=self.ca_file)

    def send(self, message: AlertMessage) -> None:
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        email.set_content(message.text())
        email.add_alternative(message.html(), subtype="html")
        try:
            if self.port == 465:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if not isinstance(smtp, smtplib.SMTP_SSL):
                    smtp.ehlo()
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=self._tls())
                        smtp.ehlo()
                    elif self.user and not (self.allow_plain_auth and _loopback(self.host)):
                        hint = (
                            "SMTP_ALLOW_PLAIN_AUTH allows that only to a relay on a loopback address"
                            if self.allow_plain_auth
                            else "for a relay on this machine, set SMTP_ALLOW_PLAIN_AUTH=1"
                        )
                        raise RefusedDelivery(
                            f"SMTP server {self.host}:{self.port} offers no STARTTLS: refusing to send the "
                            f"credentials in clear (use port 465 or a server with STARTTLS; {hint})"
                        )
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(email)
        except RefusedDelivery:
            raise
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
                ca_file=env.get("SMTP_SSL_CA_FILE") or None,
                allow_plain_auth=env.get("SMTP_ALLOW_PLAIN_AUTH", "").lower() in ("1", "true", "yes"),
            )
        )
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            if isinstance(exc, RefusedDelivery):
                break
            if attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    log.error("giving up on %s for this run: %s", channel.name, error)
    return error
