"""Why the broker connection failed, in words a user can act on.

paho reports a failed connection attempt without its cause, and a TLS alert from
the broker only as a socket error in its own log. `PahoLog` keeps that error for
the link to name, and `describe_failure` / `describe_refusal` turn causes into
one line that points at the setting to check.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

PROTOCOL_HINT = "set mqtt.protocol (SENSORCAST_MQTT__PROTOCOL) to 3.1.1 for this broker"
UNSUPPORTED_PROTOCOL = {1, 132}  # v3.1.1 return code 1; v5 reason 0x84
BAD_CREDENTIALS = {4, 5, 134, 135}  # v3.1.1 return codes 4, 5; v5 reasons 0x86, 0x87
SESSION_TAKEN_OVER = 142  # v5 reason 0x8E: another connection took this client id
CLIENT_CERT_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "UNSUPPORTED_CERT")
"""TLS alerts by which a broker refuses the client certificate (or its absence)."""


class PahoLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """paho's log, minus what the link reports itself: a socket error on receiving or
    sending (say, the broker's TLS alert, or a broker gone mid-write) is kept for the link
    to name, and paho's 'Client is not connected', said on every retry, goes to DEBUG. A
    broker restarted under load used to add 'failed to send on socket: Broken pipe' at
    ERROR to the link's own warning that it disconnected."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self.socket_error: OSError | None = None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg)
        if text.startswith(("failed to receive on socket", "failed to send on socket")) and args:
            if isinstance(args[0], OSError):
                self.socket_error = args[0]
            level = logging.DEBUG
        elif text.startswith("Client is not connected"):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)

    def take_socket_error(self) -> OSError | None:
        error, self.socket_error = self.socket_error, None
        return error


def describe_failure(
    exc: OSError | None, endpoint: str, host: str, closed: Any = None, v5: bool = False
) -> tuple[int, str]:
    """Log level and line for a connection attempt that failed before the broker accepted
    it: a TLS certificate either side refused, or the network. `closed`: paho's reason when
    the connection was made and then lost without an error of its own. `v5`: the attempt
    was MQTT 5, which a broker of 3.1.1 only may leave unanswered instead of refusing it
    (amqtt 0.12 does with a will or a session expiry, as both of the daemon's connects have)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return logging.ERROR, (
            f"TLS handshake with {endpoint} failed: certificate verify failed "
            f"({exc.verify_message}): the broker's certificate is not signed by "
            f"mqtt.tls.ca_file (or the system's CAs when unset), or does not name mqtt.host "
            f"{host!r}; retrying"
        )
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if any(alert in reason for alert in CLIENT_CERT_ALERTS):
            hint = "the broker does not accept the client certificate (mqtt.tls.cert_file)"
        elif "WRONG_VERSION_NUMBER" in reason:
            hint = "is mqtt.port a TLS listener?"
        else:
            hint = "check mqtt.tls"
        text = reason.lower().replace("_", " ")
        return logging.ERROR, f"TLS with {endpoint} failed: {text}: {hint}; retrying"
    if isinstance(exc, ConnectionResetError) and endpoint.startswith("mqtts://"):
        # a plaintext listener resets a TLS ClientHello (mosquitto does), before any alert
        return logging.WARNING, (
            f"broker {endpoint} reset the connection during the TLS handshake: is mqtt.port a "
            "TLS listener? (mqtt.tls.enabled is true, and TLS never falls back to plaintext); "
            "retrying"
        )
    if exc is None and closed is not None:
        protocol = f", and that it speaks MQTT 5 (if not, {PROTOCOL_HINT})" if v5 else ""
        return logging.WARNING, (
            f"broker {endpoint} closed the connection before accepting it ({closed}): check "
            f"that mqtt.port and mqtt.tls match the broker's listener{protocol}; retrying"
        )
    detail = f" ({exc.strerror or exc})" if exc is not None else ""
    return logging.WARNING, f"broker {endpoint} unreachable{detail}; retrying with backoff"


def describe_refusal(reason: Any, endpoint: str, username: str | None, v5: bool) -> str:
    """The line for a CONNACK that refused the connection."""
    if reason.value in BAD_CREDENTIALS:
        return (
            f"broker {endpoint} refused to authenticate mqtt.username {username!r} ({reason}): "
            "check the user name and password; retrying quietly"
        )
    hint = f"; {PROTOCOL_HINT}" if v5 and reason.value in UNSUPPORTED_PROTOCOL else ""
    return f"broker {endpoint} refused the connection: {reason}{hint}"
