"""What a failed Temporal connection means, and which setting fixes it. Pure: text in, message out.

The SDK reports TLS and authentication failures as one long transport error (rustls and tonic wording).
`explain_connect_error` reads it together with what the client sent (TLS or not, a client certificate,
an API key) and says what is wrong in the words of the caller's settings (`SettingNames`): the runtime
config and Temporal's environment variables for the worker, the environment for the CLI, the
TemporalConnection's fields for the operator. It never sees, so never repeats, an API key or private key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CLI_SETTINGS",
    "RUNTIME_SETTINGS",
    "ConnectProblem",
    "SettingNames",
    "diagnose",
    "explain_connect_error",
]


@dataclass(frozen=True)
class SettingNames:
    """How the caller names each connection setting in its messages."""

    address: str
    tls: str
    ca: str
    server_name: str
    client_cert: str
    api_key: str


RUNTIME_SETTINGS = SettingNames(
    address="temporal.address (or TEMPORAL_ADDRESS)",
    tls="temporal.tls (or TEMPORAL_TLS=true)",
    ca="temporal.tls.caFile (or TEMPORAL_TLS_SERVER_CA_CERT_PATH)",
    server_name="temporal.tls.serverName (or TEMPORAL_TLS_SERVER_NAME)",
    client_cert="temporal.tls.clientCertFile and clientKeyFile (or TEMPORAL_TLS_CLIENT_CERT_PATH and "
    "TEMPORAL_TLS_CLIENT_KEY_PATH)",
    api_key="temporal.apiKeyEnv (or TEMPORAL_API_KEY)",
)
"""The worker: its runtime config (rendered by the operator from a TemporalConnection) or the env."""

CLI_SETTINGS = SettingNames(
    address="--address (or TEMPORAL_ADDRESS)",
    tls="TEMPORAL_TLS=true",
    ca="TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    server_name="TEMPORAL_TLS_SERVER_NAME",
    client_cert="TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH",
    api_key="TEMPORAL_API_KEY",
)
"""The CLI: Temporal's standard environment variables (a profile file when TEMPORAL_CONFIG_FILE is set)."""


class ConnectProblem(Enum):
    """The kinds of connection failure a setting can fix."""

    SERVER_CA = "server-ca"
    SERVER_NAME = "server-name"
    SERVER_CERT_EXPIRED = "server-cert-expired"
    NOT_TLS = "not-tls"
    TLS_EXPECTED = "tls-expected"
    CREDENTIALS_REFUSED = "credentials-refused"
    OTHER = "other"


_SERVER_CA = ("unknownissuer", "unknown issuer", "unable to get local issuer", "self signed certificate")
_SERVER_NAME = ("notvalidforname", "not valid for name", "hostname mismatch")
_NOT_TLS = ("invalidcontenttype", "wrong version number", "corrupt message", "invalidmessage")
# A TLS server answering a plaintext HTTP/2 client closes the connection or sends GOAWAY.
_CLOSED = ("connection closed", "goaway", "frame_size_error", "broken pipe", "connection reset")
# Refusals: a gRPC status, or a TLS alert from a server that checks client certificates in the handshake.
_REFUSED = (
    "unauthenticated",
    "permissiondenied",
    "permission denied",
    "certificaterequired",
    "badcertificate",
    "certificateexpired",
    "certificaterevoked",
    "unknownca",
    "accessdenied",
)
_GRPC_MESSAGE = re.compile(r'Status \{ code: (\w+), message: "((?:[^"\\]|\\.)*)"')
# rustls: `AlertReceived(CertificateRequired)`.
_ALERT = re.compile(r"AlertReceived\((\w+)\)")
_PRESENTED = re.compile(r"presented: \[([^\]]*)\]")
_NAME = re.compile(r'(?:DnsName|IpAddress)\(\\?"?([^")\\]+)')


def diagnose(error: str, *, tls: bool) -> ConnectProblem:
    """The kind of failure `error` (the SDK's text) describes, for a client that did or did not use TLS."""
    text = error.lower()
    if any(marker in text for marker in _SERVER_NAME):
        return ConnectProblem.SERVER_NAME
    if any(marker in text for marker in _SERVER_CA):
        return ConnectProblem.SERVER_CA
    if "invalidcertificate(expired" in text:
        return ConnectProblem.SERVER_CERT_EXPIRED
    if tls and any(marker in text for marker in _NOT_TLS):
        return ConnectProblem.NOT_TLS
    if any(marker in text for marker in _REFUSED):
        return ConnectProblem.CREDENTIALS_REFUSED
    if not tls and any(marker in text for marker in _CLOSED):
        return ConnectProblem.TLS_EXPECTED
    return ConnectProblem.OTHER


def _server_said(error: str) -> str:
    found = _GRPC_MESSAGE.search(error)
    if found:
        return f"{found.group(1)}: {found.group(2)}"
    alert = _ALERT.search(error)
    return f"TLS alert {alert.group(1)}" if alert else "refused"


def _presented_names(error: str) -> str:
    found = _PRESENTED.search(error)
    names = _NAME.findall(found.group(1)) if found else []
    return ", ".join(names)


def explain_connect_error(
    error: str,
    *,
    target: str,
    namespace: str,
    tls: bool,
    ca: bool,
    client_cert: bool,
    api_key: bool,
    settings: SettingNames,
) -> str:
    """One message: what failed connecting to `target` and the setting to change.

    `tls`, `ca`, `client_cert` and `api_key` say what the client used (a CA bundle of its own rather than
    the system's, a client certificate, an API key).
    """
    where = f"could not connect to Temporal at {target} (namespace {namespace!r})"
    problem = diagnose(error, tls=tls)
    if problem is ConnectProblem.SERVER_CA:
        trusted = "the CA bundle set in" if ca else "the system's CAs (no CA bundle is set in"
        closing = "" if ca else ")"
        return (
            f"{where}: the server's certificate is not signed by a CA this client trusts ({trusted} "
            f"{settings.ca}{closing}): set {settings.ca} to the CA that signed the server's certificate"
        )
    if problem is ConnectProblem.SERVER_NAME:
        presented = _presented_names(error)
        holds = f" (it holds {presented})" if presented else ""
        return (
            f"{where}: the server's certificate is not valid for the name this client expects{holds}: set "
            f"{settings.server_name} to a name the certificate holds, or check {settings.address}"
        )
    if problem is ConnectProblem.SERVER_CERT_EXPIRED:
        return f"{where}: the server's certificate has expired: renew the server's certificate"
    if problem is ConnectProblem.NOT_TLS:
        return (
            f"{where}: the server does not speak TLS: turn TLS off ({settings.tls}, or an API key, which "
            f"implies TLS) or check {settings.address}"
        )
    if problem is ConnectProblem.TLS_EXPECTED:
        return (
            f"{where}: the server closed the connection before answering; if it expects TLS, set "
            f"{settings.tls} (and {settings.ca} for a private CA)"
        )
    if problem is ConnectProblem.CREDENTIALS_REFUSED:
        said = _server_said(error)
        if api_key:
            return (
                f"{where}: the server refused the API key ({said}): set {settings.api_key} to a valid, "
                f"unexpired API key for namespace {namespace!r}"
            )
        if client_cert:
            return (
                f"{where}: the server refused the client certificate ({said}): set {settings.client_cert} "
                "to a certificate that is signed by the CA the server trusts and has not expired"
            )
        return (
            f"{where}: the server requires credentials ({said}): set {settings.client_cert} (mTLS) or "
            f"{settings.api_key} (API key)"
        )
    return f"{where}: {error}. Check {settings.address}, that the server is running, and its TLS settings"
