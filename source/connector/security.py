"""OCPP security profiles 1 to 3 and MQTT over TLS: checked at start, applied per handshake.

Profile 1: HTTP Basic per charge point (user = identity), checked before the WebSocket
opens; passwords compared in constant time. Profile 2: `wss://` with the operator's
certificate and key. Profile 3: charge points must present a client certificate signed by
the operator's CA. Everything that reads files runs at start, so a missing or unreadable
file stops the start (exit 2) instead of the first charger's handshake.
"""

from __future__ import annotations

import hmac
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_authorization_basic

from connector.settings import Settings


class SecurityConfigError(Exception):
    """A security setting that cannot be used; the message names the variable, never a secret."""


@dataclass(frozen=True)
class Security:
    passwords: dict[str, str] | None  # identity -> password; None: no Basic auth
    allowed: frozenset[str] | None  # identities; None: any
    ocpp_tls: ssl.SSLContext | None
    mqtt_ca_file: str | None

    def __repr__(self) -> str:  # never show passwords, even in debug output
        return f"Security(basic_auth={self.passwords is not None}, allowed={self.allowed}, tls={bool(self.ocpp_tls)})"


def load(settings: Settings) -> Security:
    passwords = _passwords(settings.ocpp_basic_auth)
    _check_someone_is_admitted(passwords, settings.allowed_charge_points)
    return Security(
        passwords=passwords,
        allowed=settings.allowed_charge_points,
        ocpp_tls=_server_tls(settings),
        mqtt_ca_file=_readable(settings.mqtt_tls_ca_file, "MQTT_TLS_CA_FILE"),
    )


def _check_someone_is_admitted(passwords: dict[str, str] | None, allowed: frozenset[str] | None) -> None:
    """A server that refuses every charge point is a configuration mistake, not a secure setup."""
    if passwords is not None and not passwords:
        raise SecurityConfigError("OCPP_BASIC_AUTH lists no charge point, so every one would be refused with 401")
    if passwords is not None and allowed is not None and not allowed & passwords.keys():
        raise SecurityConfigError(
            "OCPP_BASIC_AUTH and OCPP_ALLOWED_CHARGE_POINTS have no charge point in common, so every one would be"
            " refused; give each allowed charge point a password"
        )


def _readable(path: str | None, name: str) -> str | None:
    if path is not None and not Path(path).is_file():
        raise SecurityConfigError(f"{name}={path} is not a readable file")
    return path


def _passwords(raw: str | None) -> dict[str, str] | None:
    """OCPP_BASIC_AUTH: a JSON object {identity: password}, or the path of a file holding one."""
    if raw is None:
        return None
    text = raw
    if not raw.lstrip().startswith("{"):
        try:
            text = Path(raw).read_text()
        except (OSError, ValueError) as error:
            # Never the value: what is not a path may well be a password (`CP_1:s3cret`).
            reason = error.strerror if isinstance(error, OSError) else "not a file name"
            raise SecurityConfigError(
                f'OCPP_BASIC_AUTH is neither a JSON object {{"<cp>": "<password>", ...}} nor a readable file ({reason})'
            ) from None
    try:
        passwords = json.loads(text)
    except ValueError:
        passwords = None
    if not isinstance(passwords, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in passwords.items()
    ):
        # The content is never echoed: it holds passwords.
        raise SecurityConfigError(
            'OCPP_BASIC_AUTH must be a JSON object {"<cp>": "<password>", ...} or a file holding one'
        )
    return passwords


def _server_tls(settings: Settings) -> ssl.SSLContext | None:
    cert, key, ca = settings.ocpp_tls_cert_file, settings.ocpp_tls_key_file, settings.ocpp_tls_ca_file
    if cert is None and key is None:
        if ca is not None:
            raise SecurityConfigError("OCPP_TLS_CA_FILE needs OCPP_TLS_CERT_FILE and OCPP_TLS_KEY_FILE as well")
        return None
    if cert is None or key is None:
        raise SecurityConfigError("OCPP_TLS_CERT_FILE and OCPP_TLS_KEY_FILE must be set together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise SecurityConfigError(
            f"OCPP_TLS_CERT_FILE={cert} / OCPP_TLS_KEY_FILE={key} cannot be used: {error}"
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as error:
            raise SecurityConfigError(f"OCPP_TLS_CA_FILE={ca} cannot be used: {error}") from None
        context.verify_mode = ssl.CERT_REQUIRED  # profile 3: no client certificate, no session
    return context


def basic_auth_refusal(security: Security, identity: str, headers: Headers) -> str | None:
    """Why a handshake fails profile 1 (for the log line, without secrets); None if it passes."""
    if security.passwords is None:
        return None
    try:
        authorization = headers["Authorization"]
    except KeyError:
        return "no HTTP Basic credentials"
    except MultipleValuesError:
        # websockets raises this for a header sent twice, on purpose
        # (https://github.com/python-websockets/websockets/issues/1208). Which one would
        # count is ambiguous (a proxy may have added one): refuse, not guess.
        return "more than one Authorization header"
    if authorization.partition(" ")[0].lower() != "basic":
        return "no HTTP Basic credentials"
    try:
        user, password = parse_authorization_basic(authorization)
    except InvalidHeader:
        return "malformed HTTP Basic credentials"
    expected = security.passwords.get(identity)
    # compare_digest for both, so timing tells neither whether the identity is known.
    # surrogateescape: websockets keeps non-UTF-8 bytes that way; get them back, never fail.
    known = hmac.compare_digest(password.encode(errors="surrogateescape"), (expected or "\0").encode())
    if user != identity or expected is None or not known:
        return "wrong identity or password"
    return None
