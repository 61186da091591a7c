"""A CA and a SuperLink certificate made for one run (``fl-launch --tls``).

    paths = make_run_certificates(run_dir / "tls", hosts=["127.0.0.1", "localhost"])
    paths.ca, paths.cert, paths.key
    # (PosixPath('.../tls/ca.pem'), PosixPath('.../tls/superlink.pem'), PosixPath('.../tls/superlink.key'))

The CA's key never leaves the run folder (mode 0600) and signs only this run's
server certificate; nodes get ``ca.pem`` and verify the SuperLink against it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsPaths:
    ca: Path
    cert: Path
    key: Path

    def relative_to(self, folder: Path) -> TlsPaths:
        """The same files named from ``folder`` (as run.json keeps them: the folder may move)."""
        return TlsPaths(self.ca.relative_to(folder), self.cert.relative_to(folder), self.key.relative_to(folder))

    def under(self, folder: Path) -> TlsPaths:
        """Relative paths made absolute under ``folder`` (where the run folder is now)."""
        return TlsPaths(folder / self.ca, folder / self.cert, folder / self.key)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fl-launch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(host: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_run_certificates(folder: Path, hosts: list[str], days: int = 30) -> TlsPaths:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("fl-launch run CA")).issuer_name(_name("fl-launch run CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("fl-launch superlink")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = TlsPaths(folder / "ca.pem", folder / "superlink.pem", folder / "superlink.key")
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths.key, key)
    _write_key(folder / "ca.key", ca_key)
    return paths
