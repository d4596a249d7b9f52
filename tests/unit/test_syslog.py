"""The syslog target URLs and the RFC 5424 / RFC 5425 framing of audit messages."""

from __future__ import annotations

import pytest

from archive_node.errors import ConfigError
from archive_node.net.syslog import (
    SyslogSender,
    SyslogTarget,
    octet_counted,
    severity_for,
    syslog_message,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tls://arr.example.org:6514", SyslogTarget("tls", "arr.example.org", 6514)),
        ("tls://arr.example.org", SyslogTarget("tls", "arr.example.org", 6514)),
        ("tcp://10.0.0.5", SyslogTarget("tcp", "10.0.0.5", 514)),
        ("udp://10.0.0.5:1514", SyslogTarget("udp", "10.0.0.5", 1514)),
        ("TLS://[2001:db8::1]:7000", SyslogTarget("tls", "2001:db8::1", 7000)),
    ],
)
def test_a_target_is_parsed_from_its_url(url, expected):
    assert SyslogTarget.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "arr.example.org:6514",
        "http://arr.example.org:6514",
        "tls://",
        "tls://:6514",
        "tls://arr.example.org:0",
        "tls://arr.example.org:65536",
        "tls://arr.example.org:port",
        "tls://arr.example.org:6514/path",
        "tls://arr.example.org:6514?x=1",
        "tls://user:secret@arr.example.org:6514",
    ],
)
def test_anything_else_is_refused_in_one_line(url):
    with pytest.raises(ValueError) as caught:
        SyslogTarget.parse(url)
    assert "\n" not in str(caught.value)


def test_ip_literals_are_told_from_names():
    assert SyslogTarget.parse("tls://127.0.0.1").host_is_ip
    assert SyslogTarget.parse("tls://[::1]").host_is_ip
    assert not SyslogTarget.parse("tls://localhost").host_is_ip
    assert str(SyslogTarget.parse("tls://[::1]")) == "tls://[::1]:6514"


def test_the_header_of_rfc_5424_with_the_bom():
    message = syslog_message(
        b"<AuditMessage/>",
        severity=severity_for(0),
        timestamp="2025-03-04T05:06:07.123456Z",
        hostname="archive.example.org",
        procid="4242",
    )
    assert message == (
        b"<85>1 2025-03-04T05:06:07.123456Z archive.example.org archive-node 4242 "
        b"IHE+RFC-3881 - \xef\xbb\xbf<AuditMessage/>"
    )


def test_the_record_number_goes_in_the_meta_sequence_id():
    message = syslog_message(b"x", severity=5, timestamp="t", hostname="h", sequence_id=42)
    assert b' IHE+RFC-3881 [meta sequenceId="42"] \xef\xbb\xbfx' in message


def test_a_failure_is_a_warning_and_bad_header_fields_are_nil():
    message = syslog_message(
        b"x", severity=severity_for(8), timestamp="", hostname="host with space", procid=""
    )
    assert message.startswith(b"<84>1 - - archive-node - IHE+RFC-3881 - \xef\xbb\xbf")
    assert syslog_message(b"x", severity=4, timestamp="t", hostname="ø", procid="1").startswith(
        b"<84>1 t - archive-node 1 "
    )


def test_octet_counting_counts_bytes():
    assert octet_counted("Æ".encode()) == b"2 \xc3\x86"


def test_a_tls_target_needs_usable_files(tmp_path):
    target = SyslogTarget.parse("tls://127.0.0.1:6514")
    with pytest.raises(ConfigError, match=r"audit\.ca_certificates"):
        SyslogSender(target)
    with pytest.raises(ConfigError, match="no such file"):
        SyslogSender(target, ca_certificates=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"audit\.ca_certificates"):
        SyslogSender(target, ca_certificates=str(junk))


def test_plain_targets_need_no_files():
    SyslogSender(SyslogTarget.parse("tcp://127.0.0.1")).close()
    SyslogSender(SyslogTarget.parse("udp://127.0.0.1")).close()
