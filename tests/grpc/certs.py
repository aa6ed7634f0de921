"""Certificates made in the test run with `cryptography`: a CA, a server certificate for 127.0.0.1
and localhost, client certificates, and a second, unrelated CA with its own client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: bytes
    key: bytes
    cert_path: Path
    key_path: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class Authority:
    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.path = directory / f"{name}-ca.pem"
        self.path.write_bytes(self.pem)

    def issue(self, common_name: str, *, server: bool, hosts: tuple[str, ...] = (), days: int = 1) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # days < 0: a certificate that has already expired (valid for one day before that)
            .not_valid_before(now - datetime.timedelta(minutes=5) + min(0, days - 1) * datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        )
        if hosts:
            names = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = common_name.replace(" ", "-")
        issued = Issued(
            cert=cert.public_bytes(serialization.Encoding.PEM), key=_pem_key(key),
            cert_path=self.directory / f"{stem}.pem", key_path=self.directory / f"{stem}.key",
        )
        issued.cert_path.write_bytes(issued.cert)
        issued.key_path.write_bytes(issued.key)
        return issued


@dataclass
class Pki:
    ca: Authority
    server: Issued
    client: Issued
    other_ca: Authority
    other_client: Issued


def make_pki(directory: Path) -> Pki:
    ca = Authority(directory, "maestro")
    other = Authority(directory, "other")
    return Pki(
        ca=ca,
        server=ca.issue("grpc-server", server=True, hosts=("127.0.0.1", "localhost")),
        client=ca.issue("run-client", server=False),
        other_ca=other,
        other_client=other.issue("stranger-client", server=False),
    )
