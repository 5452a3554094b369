"""A real SMTP server (aiosmtpd) and an SMS webhook for the tests: the service delivers to them over the
network, and a test reads what arrived as a person would read their mail."""
import datetime
import email
import email.policy
import http.server
import json
import re
import ssl
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = re.compile(r"[?&](?:verify|reset)=([A-Za-z0-9_-]+)")
CODE = re.compile(r"\b(\d{6})\b")


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Inbox:
    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.sessions_tls: list[bool] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.changed:
            self.messages.append(message)
            self.sessions_tls.append(session.ssl is not None)
            self.changed.notify_all()
        return "250 OK"


class MailServer:
    """SMTP on 127.0.0.1: plain with STARTTLS offered (`smtps=False`), or TLS from the first byte; with
    `credentials`, AUTH is required."""

    def __init__(self, cert: Path, key: Path, port: int, smtps: bool = False, credentials: tuple[str, str] | None = None):
        self.inbox = _Inbox()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options: dict = {}
        if credentials:
            def authenticate(server, session, envelope, mechanism, auth_data):
                given = (auth_data.login.decode(), auth_data.password.decode()) if isinstance(auth_data, LoginPassword) else None
                return AuthResult(success=given == credentials)

            # Implicit TLS (smtps) is TLS from the first byte; aiosmtpd only counts STARTTLS as TLS for AUTH.
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=not smtps)
        if smtps:
            options["ssl_context"] = context
        else:
            options["tls_context"] = context
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, ready_timeout=10, **options)
        self.port = port
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.inbox.changed:
            return [m for m in self.inbox.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 15) -> EmailMessage:
        """The `count`-th message to `address`, once it has arrived."""
        deadline = time.monotonic() + timeout
        with self.inbox.changed:
            while True:
                found = [m for m in self.inbox.messages if m["To"] == address]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                assert left > 0, f"no message #{count} to {address} within {timeout} s; got {len(found)}"
                self.inbox.changed.wait(left)


def proof(text: str) -> tuple[str, str]:
    """The link's token and the 6-digit code in a message's text."""
    token, code = TOKEN.search(text), CODE.search(text)
    assert token and code, text
    return token.group(1), code.group(1)


def body_of(message: EmailMessage) -> str:
    return message.get_content()


class SmsHook:
    """An HTTP endpoint that takes the service's text messages: POST {"to", "text"}."""

    def __init__(self):
        self.received: list[dict] = []
        self.changed = threading.Condition()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.changed:
                    hook.received.append(data)
                    hook.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, to: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [m["text"] for m in self.received if m["to"] == to]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                assert left > 0, f"no text message to {to} within {timeout} s"
                self.changed.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
