"""SMTP credentials travel only over TLS: against real aiosmtpd servers on loopback, one offering STARTTLS
with a self-signed certificate, one offering none (a plain relay)."""

from __future__ import annotations

import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from monitors import alerts
from monitors.tests.conftest import MailSink
from testkit.fixtures import free_port
from testkit.tls import self_signed

LOGIN, PASSPHRASE = "alerts@clinic.test", "relay-secret-1"


class Relay(MailSink):
    """A mail sink that records each login attempt and whether its session was encrypted."""

    def __init__(self):
        super().__init__()
        self.logins: list[tuple[str, bool]] = []

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode()
        self.logins.append((login, session.ssl is not None))
        return AuthResult(success=login == LOGIN and auth_data.password.decode() == PASSPHRASE)


def _serve(request, tls: ssl.SSLContext | None):
    relay = Relay()
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls,
        authenticator=relay.authenticator,
        # The plain relay takes a login without TLS: the refusal must come from our side.
        auth_require_tls=tls is not None,
    )
    controller.start()
    request.addfinalizer(controller.stop)
    relay.port = controller.port
    return relay


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def starttls_relay(request, certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return _serve(request, context)


@pytest.fixture
def plain_relay(request):
    return _serve(request, None)


def message() -> alerts.AlertMessage:
    return alerts.AlertMessage(run_id="run-tls", project="telemed-elt", transitions=[])


def channel(port: int, **options) -> alerts.EmailChannel:
    return alerts.EmailChannel("127.0.0.1", port, "monitors@clinic.test", ["oncall@clinic.test"], **options)


def test_credentials_go_after_starttls_with_a_verified_certificate(starttls_relay, certificate):
    alerts.deliver(
        channel(starttls_relay.port, user=LOGIN, password=PASSPHRASE, ca_file=str(certificate[0])), message()
    )
    assert starttls_relay.logins == [(LOGIN, True)]
    assert len(starttls_relay.messages) == 1


def test_an_untrusted_certificate_stops_before_the_credentials(starttls_relay):
    with pytest.raises(alerts.DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        channel(starttls_relay.port, user=LOGIN, password=PASSPHRASE).send(message())
    assert starttls_relay.logins == [] and starttls_relay.messages == []


def test_no_starttls_means_no_credentials_and_no_retry(plain_relay):
    error = alerts.deliver(channel(plain_relay.port, user=LOGIN, password=PASSPHRASE), message(), backoff_s=5)
    assert error and "offers no STARTTLS: refusing to send the credentials in clear" in error
    assert "SMTP_ALLOW_PLAIN_AUTH=1" in error
    assert plain_relay.logins == [] and plain_relay.messages == []


def test_a_local_plain_relay_is_allowed_only_when_asked(plain_relay):
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(plain_relay.port),
        "SMTP_USER": LOGIN,
        "SMTP_PASSWORD": PASSPHRASE,
        "ALERT_EMAIL_TO": "oncall@clinic.test",
        "SMTP_ALLOW_PLAIN_AUTH": "1",
    }
    (email,) = alerts.channels_from_env(env)
    email.send(message())
    assert plain_relay.logins == [(LOGIN, False)] and len(plain_relay.messages) == 1
    # Without credentials nothing secret travels: a plain relay takes the alert as before.
    channel(plain_relay.port).send(message())
    assert len(plain_relay.messages) == 2


def test_the_plain_relay_allowance_is_for_loopback_only():
    far = alerts.EmailChannel("192.0.2.10", 25, "m@clinic.test", ["o@clinic.test"], user=LOGIN, allow_plain_auth=True)
    assert far.allow_plain_auth and not alerts._loopback(far.host)
    assert alerts._loopback("127.0.0.1") and alerts._loopback("::1") and alerts._loopback("localhost")
