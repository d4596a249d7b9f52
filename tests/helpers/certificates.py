"""Test certificates made with the openssl command: a region CA, a rogue CA, and certificates
for the node and its peers (RSA 2048, as DCMTK's BCP 195 profile expects)."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Credentials:
    """A certificate, its key and the CA file that signed it."""

    certificate: Path
    private_key: Path
    ca: Path

    @property
    def fingerprint(self) -> str:
        """'SHA256:AB:CD:..', as `openssl x509 -fingerprint -sha256` prints it."""
        der = ssl.PEM_cert_to_DER_cert(self.certificate.read_text())
        digest = hashlib.sha256(der).hexdigest().upper()
        return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))

    def client_context(self, ca: Path | None = None) -> ssl.SSLContext:
        """What a pynetdicom SCU of these credentials uses: it presents the certificate and
        checks the node's against `ca` (default its own CA)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca or self.ca))
        context.check_hostname = False
        context.load_cert_chain(self.certificate, self.private_key)
        return context

    def server_context(self, ca: Path | None = None) -> ssl.SSLContext:
        """What a pynetdicom SCP of these credentials (a C-MOVE destination) uses: it
        presents the certificate and asks for the caller's, checked against `ca`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca or self.ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self.certificate, self.private_key)
        return context


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


class CertificateAuthority:
    """A CA in `directory` that issues certificates for 127.0.0.1."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate = directory / "ca.pem"
        self.private_key = directory / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", self.private_key, "-out", self.certificate, "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        self._serial = 0

    def issue(self, name: str) -> Credentials:
        """A certificate for CN=`name`, good for server and client, with 127.0.0.1."""
        self._serial += 1
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        certificate = self.directory / f"{name}.pem"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
            "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.certificate, "-CAkey", self.private_key,
            "-set_serial", str(self._serial), "-days", "2", "-out", certificate,
            "-extfile", extensions,
        )  # fmt: skip
        return Credentials(certificate, key, self.certificate)


@dataclass(frozen=True)
class Pki:
    """The region's CA with the node's and three peers' certificates, and a rogue CA's."""

    region: CertificateAuthority
    node: Credentials
    workstation: Credentials  # bound to the AE that retrieves
    modality: Credentials  # bound to the AE that stores
    unbound: Credentials  # signed by the region's CA, bound to no AE
    rogue: Credentials  # same names, another CA


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (apt-get install openssl)")
    region = CertificateAuthority(directory / "region", "Test Region CA")
    rogue = CertificateAuthority(directory / "rogue", "Test Rogue CA")
    return Pki(
        region=region,
        node=region.issue("archive"),
        workstation=region.issue("workstation"),
        modality=region.issue("modality"),
        unbound=region.issue("unbound"),
        rogue=rogue.issue("modality"),
    )
