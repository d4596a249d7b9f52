"""A throwaway PKI for a benchmark run over DICOM TLS: a CA, the node's certificate and the
sending AE's, made with the openssl command in the run's temporary directory.

A small copy of tests/helpers/certificates.py's openssl steps (RSA 2048, SAN IP:127.0.0.1, as
DCMTK's BCP 195 profile expects): bench/ imports from archive_node only, never from tests/,
and needs none of the tests' rogue CA, pytest or extra peers."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Credentials:
    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class BenchPki:
    """The CA file, the node's credentials and the sending AE's (client) credentials."""

    ca: Path
    node: Credentials
    client: Credentials

    def client_context(self) -> ssl.SSLContext:
        """What the benchmark's own pynetdicom client (its C-ECHO probe) uses: it presents the
        client certificate and checks the node's against the CA."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        context.check_hostname = False
        context.load_cert_chain(self.client.certificate, self.client.private_key)
        return context

    def node_config(self, port: int) -> str:
        """The node's [tls] section (TOML) for a TLS port `port`."""
        return (
            f'[tls]\nport = {port}\ncertificate = "{self.node.certificate}"\n'
            f'private_key = "{self.node.private_key}"\nca_certificates = "{self.ca}"\n'
            "require_client_certificate = true\n"
        )

    def storescu_args(self) -> list[str]:
        """DCMTK storescu's options for TLS with the client certificate, checking the node's
        against the CA (the default BCP 195 non-downgrading profile)."""
        return [
            *("+tls", str(self.client.private_key), str(self.client.certificate)),
            *("+cf", str(self.ca)),
        ]


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> BenchPki:
    """A CA in `directory` and two certificates it signs, good for server and client, for
    127.0.0.1: the node's (CN=archive) and the sending AE's (CN=bench)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed for --tls (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", ca_key, "-out", ca, "-subj", "/CN=Bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    extensions = directory / "leaf.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )

    def issue(name: str, serial: int) -> Credentials:
        key, request = directory / f"{name}.key", directory / f"{name}.csr"
        certificate = directory / f"{name}.pem"
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
            "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key,
            "-set_serial", str(serial), "-days", "2", "-out", certificate,
            "-extfile", extensions,
        )  # fmt: skip
        return Credentials(certificate, key)

    return BenchPki(ca=ca, node=issue("archive", 1), client=issue("bench", 2))
