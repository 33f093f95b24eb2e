"""TLS and SASL/PLAIN listeners for a local broker: a throwaway certificate authority made with the
``openssl`` command, and the server properties that open SSL and SASL_SSL listeners beside the
PLAINTEXT one.

The broker reads its key and certificates as PEM files (``ssl.keystore.type=PEM``), so no Java
keystore tool is needed. The certificates are meant for a broker on the loopback address that
lives as long as a test or a demo: they name 127.0.0.1 and localhost and expire within days.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from antinex import broker
from antinex.options import RuntimeFailure

# P-256 keys: made in milliseconds, unlike RSA, and read by both Java and Python's ssl module.
_KEY_OPTIONS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
# JAAS reads a PLAIN user's name as a bare word and the password between double quotes.
_USER_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Certificates:
    """The PEM files of one certificate authority and the broker certificate it signed."""

    ca_certificate: Path  # what clients pass as --ssl-cafile
    keystore: Path  # the broker's private key, then its certificate and the CA's


@dataclass(frozen=True)
class SecureListeners:
    """An SSL listener and a SASL_SSL listener (PLAIN mechanism) on the loopback address."""

    ssl_port: int
    sasl_ssl_port: int
    certificates: Certificates
    plain_users: Mapping[str, str] = field(default_factory=dict)  # user name → password

    @property
    def ssl_bootstrap(self) -> str:
        return broker.bootstrap_address(self.ssl_port)

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return broker.bootstrap_address(self.sasl_ssl_port)


def make_certificates(
    directory: Path, hosts: Sequence[str] = (broker.HOST, "localhost"), days: int = 7
) -> Certificates:
    """Create a certificate authority in ``directory`` and a broker certificate for ``hosts``
    signed by it; raise ``RuntimeFailure`` when ``openssl`` is missing or fails."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    server_key, server_request = directory / "broker.key", directory / "broker.csr"
    server_cert, extensions = directory / "broker.pem", directory / "broker.ext"

    _openssl(
        "req", "-x509", *_KEY_OPTIONS, "-keyout", ca_key, "-out", ca_cert,
        "-days", str(days), "-subj", f"/CN=antinex local CA {secrets.token_hex(4)}",
    )  # fmt: skip

    names = [f"IP:{host}" if _is_address(host) else f"DNS:{host}" for host in hosts]
    extensions.write_text(
        f"subjectAltName={','.join(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-new", *_KEY_OPTIONS, "-keyout", server_key, "-out", server_request,
        "-subj", f"/CN={hosts[0]}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", server_request, "-CA", ca_cert, "-CAkey", ca_key,
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", str(days),
        "-extfile", extensions, "-out", server_cert,
    )  # fmt: skip

    keystore = directory / "broker-keystore.pem"
    parts = (server_key, server_cert, ca_cert)
    keystore.write_text("".join(part.read_text() for part in parts))
    keystore.chmod(0o600)
    return Certificates(ca_certificate=ca_cert, keystore=keystore)


def secure_listener_settings(port: int, secure: SecureListeners) -> dict[str, str]:
    """Server properties that add ``secure``'s listeners to those of a broker on ``port``; pass
    them to ``broker.start_broker`` as its ``extra_settings``.

    Brokers and the controller keep talking PLAINTEXT among themselves on the loopback address.
    """
    for user, password in secure.plain_users.items():
        if not _USER_NAME.fullmatch(user):
            raise ValueError(f"PLAIN user name {user!r} may hold only letters, digits, _ . -")
        if '"' in password or "\\" in password:
            raise ValueError(f'the password of PLAIN user {user!r} may not hold " or \\')
    plain = broker.listener_settings(port)
    ssl_address = broker.bootstrap_address(secure.ssl_port)
    sasl_address = broker.bootstrap_address(secure.sasl_ssl_port)
    added = f"SSL://{ssl_address},SASL_SSL://{sasl_address}"
    users = " ".join(f'user_{user}="{password}"' for user, password in secure.plain_users.items())
    return {
        "listeners": f"{plain['listeners']},{added}",
        "advertised.listeners": f"{plain['advertised.listeners']},{added}",
        "listener.security.protocol.map": (
            f"{plain['listener.security.protocol.map']},SSL:SSL,SASL_SSL:SASL_SSL"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(secure.certificates.keystore),
        "ssl.client.auth": "none",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        ),
    }


def _is_address(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*", host))


def _openssl(*args: str | Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeFailure(
            "openssl was not found on PATH; install it (apt-get install openssl) to make "
            "certificates for a TLS listener."
        )
    command = [openssl, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeFailure(f"openssl {args[0]} failed (exit {result.returncode}): {last}")
