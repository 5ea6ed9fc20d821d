"""Throwaway TLS material for tests, and the daemon runner speaking HTTPS.

`make_tls_files` writes a CA, a server certificate and a client certificate.

Made at test time with `cryptography` (EC P-256, valid for one day) and written to a
temporary directory; no key is ever committed. The server certificate names
localhost, 127.0.0.1 and ::1, as Go (Prometheus) and Python clients both check SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .daemon import TidemarkProcess

__all__ = ["TLSFiles", "TLSTidemarkProcess", "make_tls_files"]


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed nothing here: clients it vouches for are strangers
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_tls_files(directory: Path) -> TLSFiles:
    """Write a CA, a server pair (localhost, 127.0.0.1, ::1) and client pairs to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("tidemark test CA")
    other = _ca("stranger CA")
    server = _leaf(
        "localhost",
        ca,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client = _leaf("prometheus", ca, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    stranger = _leaf("stranger", other, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files = TLSFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca_cert=directory / "other-ca.pem",
        other_client_cert=directory / "stranger.pem",
        other_client_key=directory / "stranger-key.pem",
    )
    _write_cert(ca[0], files.ca_cert)
    _write_cert(other[0], files.other_ca_cert)
    _write_cert(server[0], files.server_cert)
    _write_key(server[1], files.server_key)
    _write_cert(client[0], files.client_cert)
    _write_key(client[1], files.client_key)
    _write_cert(stranger[0], files.other_client_cert)
    _write_key(stranger[1], files.other_client_key)
    return files


class TLSTidemarkProcess(TidemarkProcess):
    """The daemon runner for a daemon serving HTTPS: trusts `tls.ca_cert` and presents
    the client certificate, so readiness polling works whatever client_auth_type says.
    """

    def __init__(self, *args: Any, tls: TLSFiles, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = ssl.create_default_context(cafile=tls.ca_cert)
        self.context.load_cert_chain(tls.client_cert, tls.client_key)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                self.url + path, timeout=timeout, context=self.context
            ) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            return 0, ""
