"""What a failed Temporal connection means: the SDK's own error texts (as seen through the nginx TLS
terminator of tests/runtime/test_tls_connections.py, and TLS alerts of servers that check client
certificates in the handshake) mapped to the setting to fix."""

from __future__ import annotations

import pytest

from durable_agents_runtime.connect_errors import (
    CLI_SETTINGS,
    RUNTIME_SETTINGS,
    ConnectProblem,
    diagnose,
    explain_connect_error,
)

CONNECT = "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError("
AFTER = "Failed client connect: `get_system_info` call error after connection: "
UNKNOWN_ISSUER = CONNECT + "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"
WRONG_NAME = (
    CONNECT + "Custom { kind: InvalidData, error: InvalidCertificate(NotValidForNameContext { expected: "
    'DnsName("wrong.example"), presented: ["DnsName(\\"localhost\\")", "IpAddress(127.0.0.1)"] }) }))'
)
TLS_TO_PLAINTEXT = CONNECT + "Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }))"
PLAINTEXT_TO_TLS = (
    AFTER
    + 'Status { code: Cancelled, message: "operation was canceled", source: Some(tonic::transport::Error('
    'Transport, hyper::Error(Canceled, "connection closed"))) }'
)
UNAUTHENTICATED = (
    AFTER + "Status { code: Unauthenticated, "
    'message: "invalid API key", metadata: MetadataMap { headers: {} }, source: None }'
)
HANDSHAKE_ALERT = CONNECT + "Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }))"
REFUSED_PORT = (
    CONNECT + 'ConnectError("tcp connect error", Os { code: 111, kind: ConnectionRefused, message: '
    '"Connection refused" })))'
)


@pytest.mark.parametrize(
    ("error", "tls", "problem"),
    [
        (UNKNOWN_ISSUER, True, ConnectProblem.SERVER_CA),
        (WRONG_NAME, True, ConnectProblem.SERVER_NAME),
        (TLS_TO_PLAINTEXT, True, ConnectProblem.NOT_TLS),
        (PLAINTEXT_TO_TLS, False, ConnectProblem.TLS_EXPECTED),
        (PLAINTEXT_TO_TLS, True, ConnectProblem.OTHER),
        (UNAUTHENTICATED, True, ConnectProblem.CREDENTIALS_REFUSED),
        (HANDSHAKE_ALERT, True, ConnectProblem.CREDENTIALS_REFUSED),
        (REFUSED_PORT, False, ConnectProblem.OTHER),
    ],
)
def test_sdk_errors_are_sorted_into_what_a_setting_can_fix(
    error: str, tls: bool, problem: ConnectProblem
) -> None:
    assert diagnose(error, tls=tls) is problem


def explain(error: str, **used: bool) -> str:
    flags = {"tls": True, "ca": True, "client_cert": False, "api_key": False} | used
    return explain_connect_error(error, target="t:7233", namespace="ns", settings=RUNTIME_SETTINGS, **flags)


def test_an_untrusted_server_certificate_names_the_ca_setting_and_says_whether_one_was_set() -> None:
    assert "the CA bundle set in temporal.tls.caFile" in explain(UNKNOWN_ISSUER)
    assert "the system's CAs (no CA bundle is set in temporal.tls.caFile" in explain(UNKNOWN_ISSUER, ca=False)


def test_a_name_mismatch_lists_the_names_the_certificate_holds() -> None:
    message = explain(WRONG_NAME)
    assert "(it holds localhost, 127.0.0.1)" in message
    assert "set temporal.tls.serverName (or TEMPORAL_TLS_SERVER_NAME)" in message


def test_a_refusal_blames_the_credential_that_was_sent() -> None:
    assert "refused the API key (Unauthenticated: invalid API key): set temporal.apiKeyEnv" in explain(
        UNAUTHENTICATED, api_key=True
    )
    assert "refused the client certificate (TLS alert CertificateRequired)" in explain(
        HANDSHAKE_ALERT, client_cert=True
    )
    neither = explain(UNAUTHENTICATED)
    assert "requires credentials" in neither and "temporal.tls.clientCertFile" in neither
    assert "temporal.apiKeyEnv" in neither


def test_the_cli_names_temporals_environment_variables() -> None:
    message = explain_connect_error(
        PLAINTEXT_TO_TLS,
        target="t:7233",
        namespace="ns",
        tls=False,
        ca=False,
        client_cert=False,
        api_key=False,
        settings=CLI_SETTINGS,
    )
    assert message.startswith("could not connect to Temporal at t:7233 (namespace 'ns'): ")
    assert "set TEMPORAL_TLS=true" in message


def test_an_unclassified_error_keeps_the_sdk_text_and_the_usual_checks() -> None:
    message = explain(REFUSED_PORT, tls=False)
    assert "Connection refused" in message and "Check temporal.address (or TEMPORAL_ADDRESS)" in message
