"""A real TLS terminator in front of the Temporal dev server, for the connection tests.

`Certificates.create(dir)` writes a test PKI with the `cryptography` package: a CA, a server certificate
for 127.0.0.1 and localhost, a client certificate, an expired client certificate, and a client certificate
from another CA. `TlsProxy` runs Debian's nginx (`scripts/install-tls-proxy.sh` installs it) with
`grpc_pass` to the dev server, on a free 127.0.0.1 port, with its own config, pid and log files in a
directory of its own; workers run as `nobody` when started by root. Modes:

- `tls`: server TLS only;
- `mtls`: the client must present a certificate signed by the CA (refused with UNAUTHENTICATED otherwise,
  as Temporal's own frontend does);
- `api-key`: every gRPC call must carry `authorization: Bearer <key>` (how Temporal Cloud API keys
  travel); a missing or wrong key is refused with UNAUTHENTICATED.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from durable_agents_runtime.devserver import free_port

__all__ = ["MODES", "Certificates", "KeyPair", "Mode", "TlsProxy", "find_nginx", "proxies_for"]

Mode = Literal["tls", "mtls", "api-key"]


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class Certificates:
    """The test PKI: `ca` signs `server`, `client` and `expired_client`; `other_ca` signs `stranger`."""

    ca: KeyPair
    server: KeyPair
    client: KeyPair
    expired_client: KeyPair
    other_ca: KeyPair
    stranger: KeyPair

    @classmethod
    def create(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca = _issue(directory, "ca", "durable-agents test CA", now=now, ca=True)
        other_ca = _issue(directory, "other-ca", "another CA", now=now, ca=True)
        server = _issue(
            directory,
            "server",
            "localhost",
            now=now,
            issuer=ca,
            sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        client = _issue(
            directory, "client", "worker", now=now, issuer=ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        expired = _issue(
            directory,
            "expired-client",
            "expired worker",
            now=now - datetime.timedelta(days=30),
            days=1,
            issuer=ca,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        stranger = _issue(
            directory, "stranger", "stranger", now=now, issuer=other_ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        return cls(ca, server, client, expired, other_ca, stranger)


def _issue(
    directory: Path,
    name: str,
    common_name: str,
    *,
    now: datetime.datetime,
    days: int = 2,
    ca: bool = False,
    issuer: KeyPair | None = None,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    if issuer is None:
        signing_key, issuer_name = key, subject
    else:
        loaded = serialization.load_pem_private_key(issuer.key_pem, password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        signing_key = loaded
        issuer_name = x509.load_pem_x509_certificate(issuer.cert_pem).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pair.key.chmod(0o600)
    return pair


def find_nginx() -> str | None:
    """Debian's nginx, if installed (`scripts/install-tls-proxy.sh`); /usr/sbin is not on every PATH."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def _grpc_error(status: int, message: str) -> str:
    # A trailers-only gRPC answer: HTTP 200 with grpc-status in the headers.
    return (
        "default_type application/grpc;\n"
        f"            add_header grpc-status {status} always;\n"
        f'            add_header grpc-message "{message}" always;\n'
        "            return 200;"
    )


class TlsProxy:
    """nginx terminating TLS on `address` (127.0.0.1:port) and passing gRPC to `upstream` in plaintext."""

    def __init__(
        self,
        directory: Path,
        *,
        upstream: str,
        certs: Certificates,
        mode: Mode,
        api_key: str | None = None,
    ) -> None:
        if (mode == "api-key") != (api_key is not None):
            raise ValueError("api_key is needed in api-key mode, and only there")
        self.directory = directory
        self.upstream = upstream
        self.certs = certs
        self.mode = mode
        self._api_key = api_key
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        """The end of nginx's error log (for failure messages)."""
        path = self.directory / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _config(self) -> str:
        d = self.directory
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        client_auth = ""
        if self.mode == "mtls":
            client_auth = (
                f"ssl_client_certificate {self.certs.ca.cert};\n        ssl_verify_client on;\n"
                "        ssl_verify_depth 2;"
            )
        key_check = ""
        key_map = ""
        if self.mode == "api-key":
            key_map = (
                "map $http_authorization $api_key_problem {\n"
                f'        "Bearer {self._api_key}" "";\n'
                '        "" "missing";\n'
                '        default "invalid";\n'
                "    }"
            )
            key_check = "if ($api_key_problem) { return 401; }"
        temp = "\n    ".join(
            f"{kind}_temp_path {d / ('tmp-' + kind)};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {d / "nginx.pid"};
error_log {d / "error.log"} info;
events {{ worker_connections 512; }}
http {{
    access_log {d / "access.log"};
    {temp}
    map_hash_bucket_size 256;
    {key_map}
    client_max_body_size 0;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        ssl_certificate {self.certs.server.cert};
        ssl_certificate_key {self.certs.server.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        {client_auth}
        error_page 495 = @bad_certificate;
        error_page 496 = @no_certificate;
        error_page 401 = @unauthenticated;
        location / {{
            {key_check}
            grpc_pass grpc://{self.upstream};
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }}
        location @bad_certificate {{
            {_grpc_error(16, "client certificate rejected: $ssl_client_verify")}
        }}
        location @no_certificate {{
            {_grpc_error(16, "client certificate required")}
        }}
        location @unauthenticated {{
            {_grpc_error(16, "$api_key_problem API key" if self.mode == "api-key" else "unauthenticated")}
        }}
    }}
}}
"""

    def start(self) -> Self:
        nginx = find_nginx()
        if nginx is None:
            raise RuntimeError("nginx is not installed: run `make tools` (scripts/install-tls-proxy.sh)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nginx.conf"
        config.write_text(self._config())
        # -p: the prefix for relative paths; -e: log start-up errors to our file, not /var/log/nginx.
        self._process = subprocess.Popen(
            [nginx, "-p", str(self.directory), "-c", str(config), "-e", str(self.directory / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}:\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.address} within 10s:\n{self.log}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


MODES: tuple[Mode, ...] = ("tls", "mtls", "api-key")


@contextlib.contextmanager
def proxies_for(
    directory: Path, *, upstream: str, certs: Certificates, api_key: str
) -> Iterator[dict[Mode, TlsProxy]]:
    """One running proxy per mode in front of `upstream` (a module's fixture); all stopped at the end."""
    started: dict[Mode, TlsProxy] = {}
    try:
        for mode in MODES:
            proxy = TlsProxy(
                directory / mode,
                upstream=upstream,
                certs=certs,
                mode=mode,
                api_key=api_key if mode == "api-key" else None,
            )
            started[mode] = proxy.start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()
