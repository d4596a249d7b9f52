"""A real Debian rsyslogd as the Audit Record Repository of the tests: TLS (gtls), plain TCP and
UDP inputs on free loopback ports, each message's raw text written to a file, one a line."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.certificates import Credentials
from tests.helpers.environment import REQUIRE_RSYSLOG
from tests.helpers.ports import LOOPBACK, free_port

RSYSLOGD = "/usr/sbin/rsyslogd"
START_DEADLINE = 10.0

# %rawmsg% is the message as received, less the octet count of TCP and TLS; json-escaped so
# that a newline or quote inside it cannot split or forge a line of the file.
CONFIG = """\
global(
  workDirectory="{work}"
  maxMessageSize="256k"
  parser.escapeControlCharactersOnReceive="off"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{certificate}"
  defaultNetstreamDriverKeyFile="{private_key}"
)
module(load="imtcp" maxSessions="20")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg:::json%\\n")
ruleset(name="audit") {{
  action(type="omfile" file="{output}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="{host}" port="{tls_port}" ruleset="audit"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth_mode}")
input(type="imtcp" address="{host}" port="{tcp_port}" ruleset="audit")
input(type="imudp" address="{host}" port="{udp_port}" ruleset="audit")
"""


class Rsyslog:
    """One rsyslogd, made with its ports but not started; start() and stop() may be called
    again (the same ports), as a repository goes down and comes back."""

    def __init__(self, directory: Path, server: Credentials, *, client_auth: bool = False) -> None:
        if shutil.which(RSYSLOGD) is None:
            message = "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)"
            if REQUIRE_RSYSLOG:
                pytest.fail(message)
            pytest.skip(message)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.work = directory / "work"
        self.work.mkdir(exist_ok=True)
        self.output = directory / "received.log"
        self.pidfile = directory / "rsyslogd.pid"
        self.log = directory / "rsyslogd.stderr"
        self.config = directory / "rsyslog.conf"
        self.ports = {"tls": free_port(), "tcp": free_port(), "udp": _free_udp_port()}
        self.config.write_text(
            CONFIG.format(
                work=self.work,
                ca=server.ca,
                certificate=server.certificate,
                private_key=server.private_key,
                output=self.output,
                host=LOOPBACK,
                tls_port=self.ports["tls"],
                tcp_port=self.ports["tcp"],
                udp_port=self.ports["udp"],
                auth_mode="x509/certvalid" if client_auth else "anon",
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, transport: str) -> str:
        return f"{transport}://{LOOPBACK}:{self.ports[transport]}"

    def start(self) -> None:
        """Start rsyslogd and wait until its three inputs are bound."""
        check = subprocess.run(
            [RSYSLOGD, "-N1", "-f", str(self.config)], capture_output=True, timeout=30
        )
        if check.returncode != 0:
            pytest.fail(f"rsyslog.conf refused: {check.stderr.decode(errors='replace')}")
        self.pidfile.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.pidfile)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_DEADLINE
        while not self._listening():
            if self.process.poll() is not None:
                pytest.fail(f"rsyslogd exited {self.process.returncode}: {self._log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"rsyslogd did not listen within {START_DEADLINE} s: {self._log_text()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def messages(self) -> list[str]:
        """Each message received so far, as its raw text (header and payload)."""
        try:
            text = self.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(f'"{line}"') for line in text.splitlines() if line]

    def wait_for(self, count: int, deadline: float = 10.0) -> list[str]:
        """The messages once there are at least `count` (fails after `deadline` seconds)."""
        end = time.monotonic() + deadline
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > end:
                assert len(found) >= count, (
                    f"{len(found)} of {count} messages arrived; rsyslogd said: {self._log_text()}"
                )
                return found
            time.sleep(0.02)

    def _listening(self) -> bool:
        for transport in ("tls", "tcp"):
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((LOOPBACK, self.ports[transport])) != 0:
                    return False
        return _udp_bound(self.ports["udp"])

    def _log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _udp_bound(port: int) -> bool:
    """Whether something has bound the UDP port (our bind is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
