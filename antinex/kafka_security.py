"""A check of the Kafka TLS and SASL settings against the broker, made once before a command
starts its Kafka clients.

kafka-python treats a certificate it cannot verify, or credentials the broker rejects, like a
broker that is away: it retries until its bootstrap times out, and says only that. One
connection of our own to a bootstrap server tells the two apart, so that a wrong CA or a wrong
password ends in one sentence naming the flag to fix. A broker that does not answer at all is
left to the command's own retries.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any

from antinex.options import UsageError

CHECK_TIMEOUT_S = 5.0
_CLIENT_ID = "antinex-check"
_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
# Both exchanges at version 1: the first whose responses carry the broker's error message.
_SASL_VERSION = 1
_MAX_RESPONSE_BYTES = 1 << 20
_HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH


class _NoVerdict(Exception):
    """The broker went away mid-check: neither accepted nor refused."""


def check_broker_security(
    bootstrap_servers: str, options: Mapping[str, Any], timeout: float = CHECK_TIMEOUT_S
) -> None:
    """Raise ``UsageError`` when the first bootstrap server that answers refuses the TLS or SASL
    settings in ``options`` (kafka-python keyword arguments, as the CLI builds them).

    Return quietly when they are accepted, when there is nothing to check (PLAINTEXT), or when
    no bootstrap server answers within ``timeout`` seconds.
    """
    protocol = options.get("security_protocol", "PLAINTEXT")
    if protocol not in _TLS_PROTOCOLS + _SASL_PROTOCOLS:
        return
    context = tls_context(options) if protocol in _TLS_PROTOCOLS else None
    if protocol in _SASL_PROTOCOLS:
        _require_sasl_flags(protocol, options)
    for address in (s.strip() for s in bootstrap_servers.split(",") if s.strip()):
        host, _, port = address.rpartition(":")
        try:
            raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        except (OSError, ValueError):
            continue
        sock = raw
        try:
            sock = _handshake(raw, context, host.strip("[]"), address, options)
            if protocol in _SASL_PROTOCOLS:
                _authenticate(sock, address, options)
        except (_NoVerdict, OSError):
            pass  # no verdict: kafka-python's own retries and errors take over
        finally:
            sock.close()
        return


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The client TLS context kafka-python builds from the same options; a file that cannot be
    used raises ``UsageError`` naming its flag."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cafile = options.get("ssl_cafile")
    try:
        if cafile:
            context.load_verify_locations(cafile)
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as err:
        raise UsageError(
            f"--ssl-cafile {cafile} cannot be used ({_reason(err)}); give a PEM file holding "
            "the certificate of the CA that signed the broker's certificate"
        ) from err
    certfile, keyfile = options.get("ssl_certfile"), options.get("ssl_keyfile")
    if keyfile and not certfile:
        raise UsageError(f"--ssl-keyfile {keyfile} needs --ssl-certfile, the certificate it keys")
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(
                f"--ssl-certfile {certfile} with --ssl-keyfile {keyfile or '(none)'} cannot be "
                f"used ({_reason(err)}); give a PEM certificate and the PEM key that belongs to it"
            ) from err
    return context


def _require_sasl_flags(protocol: str, options: Mapping[str, Any]) -> None:
    for option, flag in (
        ("sasl_mechanism", "--sasl-mechanism"),
        ("sasl_plain_username", "--sasl-username"),
        ("sasl_plain_password", "--sasl-password"),
    ):
        if not options.get(option):
            raise UsageError(f"--security-protocol {protocol} needs {flag} too")


def _handshake(
    sock: socket.socket,
    context: ssl.SSLContext | None,
    host: str,
    address: str,
    options: Mapping[str, Any],
) -> socket.socket:
    if context is None:
        return sock
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as err:
        if err.verify_code == _HOSTNAME_MISMATCH:
            raise UsageError(
                f"the certificate of the broker at {address} does not name {host} "
                f"({err.verify_message}); connect by a name or address it holds"
            ) from err
        cafile = options.get("ssl_cafile")
        judge = (
            f"--ssl-cafile {cafile} does not vouch for"
            if cafile
            else "no CA known to this system vouches for"
        )
        raise UsageError(
            f"the broker at {address} presented a certificate that {judge} "
            f"({err.verify_message}); give the certificate of the CA that signed it as "
            "--ssl-cafile"
        ) from err


def _authenticate(sock: socket.socket, address: str, options: Mapping[str, Any]) -> None:
    """The SASL exchange a kafka-python connection makes first; a refusal raises
    ``UsageError``."""
    # Limitation: the exchange is spoken with kafka-python 3's protocol classes; with kafka-python
    # 2 it is skipped, and a refused password shows as a broker that cannot be reached.
    try:
        from kafka.net.sasl import get_sasl_mechanism
        from kafka.protocol.sasl import (
            SaslAuthenticateRequest,
            SaslAuthenticateResponse,
            SaslHandshakeRequest,
            SaslHandshakeResponse,
        )
    except ImportError:
        return

    mechanism_name = options["sasl_mechanism"]
    offered = _exchange(sock, SaslHandshakeRequest(mechanism=mechanism_name), SaslHandshakeResponse)
    if offered.error_code:
        raise UsageError(
            f"the broker at {address} does not take --sasl-mechanism {mechanism_name} on this "
            f"listener (it offers {', '.join(offered.mechanisms) or 'none'}); choose one it "
            "offers, or check --security-protocol"
        )

    mechanism = get_sasl_mechanism(mechanism_name)(**options)
    while not mechanism.is_done():
        request = SaslAuthenticateRequest(auth_bytes=mechanism.auth_bytes())
        answer = _exchange(sock, request, SaslAuthenticateResponse)
        if answer.error_code:
            raise UsageError(
                f"the broker at {address} refused SASL user {options['sasl_plain_username']!r} "
                f"({answer.error_message or 'no reason given'}); check --sasl-username and "
                "--sasl-password"
            )
        try:
            mechanism.receive(answer.auth_bytes)
        except Exception as err:  # e.g. a SCRAM server proof that does not check out
            raise _NoVerdict("the broker's SASL answer did not check out") from err


def _exchange(sock: socket.socket, request: Any, response_type: Any) -> Any:
    """Send one framed request and decode its response."""
    request.API_VERSION = _SASL_VERSION
    request.with_header(correlation_id=1, client_id=_CLIENT_ID)
    sock.sendall(request.encode(header=True, framed=True))
    (size,) = struct.unpack(">i", _read(sock, 4))
    if not 0 < size <= _MAX_RESPONSE_BYTES:
        raise _NoVerdict(f"a response of {size} bytes is not a SASL response")
    try:
        return response_type.decode(_read(sock, size), version=_SASL_VERSION, header=True)
    except Exception as err:  # kafka-python raises many kinds for bytes it cannot decode
        raise _NoVerdict("the response is not a SASL response") from err


def _read(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise _NoVerdict("the broker closed the connection")
        data += chunk
    return bytes(data)


def _reason(err: OSError | ssl.SSLError) -> str:
    return str(getattr(err, "strerror", None) or getattr(err, "reason", None) or err)
