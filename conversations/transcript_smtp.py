"""Which failures of an email send are worth a retry: a 4xx answer, a dropped or refused
connection, a network error. A 5xx answer, refused recipients or a failed login stay failed."""

from __future__ import annotations

import smtplib


def smtp_code(exc: BaseException) -> str:
    """The SMTP reply code(s) of the failure, or its type: what is logged (never the address or text)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return ",".join(sorted({str(code) for code, _ in exc.recipients.values()})) or "recipients_refused"
    if isinstance(exc, smtplib.SMTPResponseException):
        return str(exc.smtp_code)
    return type(exc).__name__


def smtp_transient(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return False  # every recipient refused: the address is not going to work
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return True
    if isinstance(exc, smtplib.SMTPException):
        return False  # not supported, data error, ...: a retry meets the same answer
    return isinstance(exc, OSError)
