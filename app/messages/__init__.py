"""Outgoing messages (SPEC §10): email through SMTP, text messages through a webhook, or the log.

A message is handed over and the request goes on: delivery runs beside it (app.threads.detach), each
attempt bounded by MAIL_TIMEOUT, retried MAIL_RETRIES times with growing pauses, and a failure is logged,
never raised to the request that asked. Nothing here imports Flask.
"""
import json
import logging
import os
import re
import smtplib
import ssl
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from app import threads

log = logging.getLogger("app.messages")

RETRY_PAUSES = (2, 8, 32, 128)  # seconds before the 2nd, 3rd, … attempt
UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9@.+_-]")


@dataclass(frozen=True)
class Message:
    to: str  # an email address, or a phone number in E.164
    subject: str
    text: str

    @property
    def by_email(self) -> bool:
        return "@" in self.to


class Outbox:
    """Where the service's messages go: MAIL_URL for email, SMS_URL for phone numbers."""

    def __init__(self, *, mail_url: str, mail_from: str, sms_url: str, timeout: float, retries: int,
                 log_dir: Path, ca_file: str = ""):
        self.mail_url, self.mail_from, self.sms_url = mail_url, mail_from, sms_url
        self.timeout, self.retries, self.log_dir, self.ca_file = timeout, retries, log_dir, ca_file
        for name, url, schemes in (("MAIL_URL", mail_url, ("log", "smtp", "smtps")),
                                   ("SMS_URL", sms_url, ("log", "http", "https"))):
            scheme = "log" if url == "log" else urlsplit(url).scheme
            if scheme not in schemes:
                raise RuntimeError(f"{name} must be one of {', '.join(schemes)}:… not {url!r}")

    def send(self, message: Message) -> None:
        """Deliver `message` beside the caller; returns at once."""
        threads.detach(self.deliver, message)

    def deliver(self, message: Message) -> bool:
        """Try, and try again: True once delivered; False (logged) after the last attempt failed."""
        try:
            send = self._email(message) if message.by_email else self._text(message)
        except Exception as e:  # a message that cannot be made (an address no mail header can carry): no retry
            log.error("message to %s not made: %s", redact(message.to), f"{type(e).__name__}: {e}")
            return False
        for attempt in range(self.retries + 1):
            try:
                send()
                return True
            except Exception as e:  # any failure of the far side is retried, then logged
                last = attempt == self.retries
                log.log(logging.ERROR if last else logging.WARNING, "message to %s not delivered (attempt %d of %d): %s",
                        redact(message.to), attempt + 1, self.retries + 1, f"{type(e).__name__}: {e}")
                if not last:  # time.sleep looked up now: in a server worker it is gevent's, and waits on the loop
                    time.sleep(RETRY_PAUSES[min(attempt, len(RETRY_PAUSES) - 1)])
        return False

    # -- email -------------------------------------------------------------------------------------------

    def _email(self, message: Message) -> Callable[[], None]:
        """The message made, and what sends it once."""
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = self.mail_from, message.to, message.subject
        email["Date"], email["Message-ID"] = formatdate(localtime=False), make_msgid(domain=_domain(self.mail_from))
        # Plain ASCII goes as it is (readable in instance/mail/ too); anything else quoted-printable.
        email.set_content(message.text, cte="7bit" if message.text.isascii() else "quoted-printable")
        content = email.as_bytes()
        if self.mail_url == "log":
            return lambda: self._keep(message, content, ".eml")
        return lambda: self._smtp(email)

    def _smtp(self, email: EmailMessage) -> None:
        url = urlsplit(self.mail_url)
        context = ssl.create_default_context(cafile=self.ca_file or None)
        host, port = url.hostname or "localhost", url.port
        if url.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port or 465, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(host, port or 587, timeout=self.timeout)
        with client:
            client.ehlo()
            if url.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(email)

    # -- text messages -----------------------------------------------------------------------------------

    def _text(self, message: Message) -> Callable[[], None]:
        if self.sms_url == "log":
            return lambda: self._keep(message, message.text.encode(), ".txt")
        request = urllib.request.Request(
            self.sms_url, data=json.dumps({"to": message.to, "text": message.text}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )

        def post() -> None:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()

        return post

    def _keep(self, message: Message, content: bytes, suffix: str) -> None:
        """MAIL_URL=log / SMS_URL=log: the message in the log and as a file under instance/mail/."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        to = UNSAFE_IN_NAMES.sub("_", message.to)[:150]  # a file name holds 255 bytes; an address may take 254
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 10**9:09d}-{to}"
        path = self.log_dir / (name + suffix)
        # Written under another name and renamed, so a reader watching the folder never sees half a
        # message; 0600 from the first byte, since it holds a working sign-in link.
        part = self.log_dir / (name + ".part")
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(content)
        os.replace(part, path)
        log.info("message to %s (%s) kept in %s:\n%s", message.to, message.subject, path, message.text)


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def redact(to: str) -> str:
    """Enough of an address for an operator to tell messages apart, not enough to read it out of a log."""
    name, at, domain = to.partition("@")
    return f"{name[:2]}…@{domain}" if at else f"{to[:4]}…{to[-2:]}"
