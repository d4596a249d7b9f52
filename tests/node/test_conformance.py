"""The DICOM Conformance Statement: docs/conformance.md is the generated one, it says what a real
node negotiates, it lists only the services a configuration turns on, and the CLI writes it
without an index."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_role
from pynetdicom.sop_class import CTImageStorage, Verification

from archive_node.config import build_config
from archive_node.dicom import status
from archive_node.net.conformance import (
    StatementError,
    accepted_contexts,
    by_service,
    conformance_statement,
    statement_ae,
)
from archive_node.rules import hl7_messages
from archive_node.rules.retrieve_plan import MAX_CONTEXTS
from tests.helpers.cli import cli_run, fails, ok
from tests.helpers.dimse import client_ae

REPOSITORY = Path(__file__).resolve().parents[2]
DOCUMENT = REPOSITORY / "docs" / "conformance.md"
JPIP_REFERENCED = "1.2.840.10008.1.2.4.94"
# Made up: a private SOP class, and one under the standard's storage root that does not exist.
PRIVATE_CLASS = "2.25.271828182845904523536028747135266249"
UNKNOWN_STORAGE_CLASS = "1.2.840.10008.5.1.4.1.1.999999"
# PS3.8 9.3.3.2 Presentation Context Item results
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4
TLS_FILES = {"certificate": "node.pem", "private_key": "node.key", "ca_certificates": "ca.pem"}


@pytest.fixture
def no_node_environment(monkeypatch):
    """What `archive-node conformance` sees with no config file and no ARCHIVE_NODE_* setting."""
    for name in ("ARCHIVE_NODE_CONFIG", "ARCHIVE_NODE_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)


def statement(**sections) -> str:
    return conformance_statement(build_config(sections))


def syntax_lists(text: str) -> dict[str, list[str]]:
    """Each 'Transfer syntax list TS-n' table of the statement: its UIDs in preference order."""
    lists: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"Table 3-\d+: Transfer syntax list (TS-\d+),", line)
        if heading:
            current = lists.setdefault(heading.group(1), [])
            continue
        row = re.match(r"\| (\d+) \| [^|]+ \| `([\d.]+)` \|$", line)
        if current is not None and row:
            assert int(row.group(1)) == len(current) + 1, line
            current.append(row.group(2))
        elif current is not None and line and not line.startswith("|"):
            current = None
    return lists


def scp_classes(text: str) -> dict[str, tuple[str, str]]:
    """Every presentation context row of the statement: SOP class UID -> (role, syntax list)."""
    rows = re.findall(r"^\| [^|]+ \| `([\d.]+)` \| (SCP[^|]*) \| (TS-\d+) \|", text, re.M)
    found = {uid: (role, syntaxes) for uid, role, syntaxes in rows}
    assert len(found) == len(rows), "a SOP class is listed twice"
    return found


# -- 1: the document is the generated statement ------------------------------------------------


def test_docs_conformance_md_is_the_statement_of_the_default_config(no_node_environment):
    assert DOCUMENT.read_text(encoding="utf-8") == conformance_statement(build_config({})), (
        "docs/conformance.md is not what the code generates: regenerate it with "
        "`archive-node conformance --output docs/conformance.md` (no config file, no "
        "ARCHIVE_NODE_* environment variable) and review the difference"
    )


def test_the_statement_is_deterministic_and_names_no_host():
    first, second = statement(), statement()
    assert first == second
    assert socket.gethostname() not in first
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", first)  # no date


# -- 2: the statement is what serve negotiates -------------------------------------------------


def test_every_listed_context_is_accepted_with_the_first_listed_syntax(node):
    text = conformance_statement(node.service.config)
    lists = syntax_lists(text)
    classes = scp_classes(text)
    assert len(classes) > 170 and str(CTImageStorage) in classes and str(Verification) in classes
    # each context proposes the listed syntaxes in the reverse order: the node must still take
    # its own first
    proposals = [(uid, list(reversed(lists[ts]))) for uid, (_role, ts) in classes.items()]
    for start in range(0, len(proposals), MAX_CONTEXTS):
        chunk = proposals[start : start + MAX_CONTEXTS]
        assoc = client_ae("UNN_WS", chunk).associate(node.host, node.port, ae_title=node.ae_title)
        assert assoc.is_established
        try:
            accepted = {
                str(cx.abstract_syntax): str(cx.transfer_syntax[0])
                for cx in assoc.accepted_contexts
            }
            assert not assoc.rejected_contexts
            for uid, _ in chunk:
                assert accepted[uid] == lists[classes[uid][1]][0], uid
        finally:
            assoc.release()


def test_storage_is_accepted_in_the_scu_role_by_role_selection_as_listed(node):
    role, _ = scp_classes(conformance_statement(node.service.config))[str(CTImageStorage)]
    assert role == "SCP, SCU by role selection"
    ae = client_ae("UNN_WS", [(CTImageStorage, [ExplicitVRLittleEndian])])
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=[build_role(CTImageStorage, scu_role=True, scp_role=True)],
    )
    assert assoc.is_established
    try:
        (context,) = assoc.accepted_contexts
        assert context.as_scp and context.as_scu  # the node may send to us (C-GET)
    finally:
        assoc.release()


def test_what_the_statement_leaves_out_is_rejected(node):
    text = conformance_statement(node.service.config)
    classes = scp_classes(text)
    listed_syntaxes = {ts for uids in syntax_lists(text).values() for ts in uids}
    assert PRIVATE_CLASS not in classes and UNKNOWN_STORAGE_CLASS not in classes
    assert JPIP_REFERENCED not in listed_syntaxes
    assert "the node does not take unknown or private storage SOP classes" in text
    assoc = client_ae(
        "UNN_WS",
        [
            (Verification, [ExplicitVRLittleEndian]),
            (PRIVATE_CLASS, [ExplicitVRLittleEndian]),
            (UNKNOWN_STORAGE_CLASS, [ExplicitVRLittleEndian]),
            (CTImageStorage, [JPIP_REFERENCED]),
        ],
    ).associate(node.host, node.port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        results = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assert results == {
            PRIVATE_CLASS: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            UNKNOWN_STORAGE_CLASS: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            str(CTImageStorage): TRANSFER_SYNTAXES_NOT_SUPPORTED,
        }
        assert [str(cx.abstract_syntax) for cx in assoc.accepted_contexts] == [str(Verification)]
    finally:
        assoc.release()


def test_a_context_the_statement_does_not_describe_stops_it():
    ae = statement_ae(build_config({}))
    ae.add_supported_context(PRIVATE_CLASS, [ExplicitVRLittleEndian])
    with pytest.raises(StatementError, match=PRIVATE_CLASS):
        by_service(accepted_contexts(ae))


def test_every_status_in_the_statement_is_one_the_code_returns():
    text = statement(hl7={"port": 2575})
    section = text.split("SOP specific conformance", 2)[2].split("Network interfaces")[0]
    codes = {int(code, 16) for code in re.findall(r"\b0x([0-9A-F]{4})\b", section)}
    named = {value for name, value in vars(status).items() if name.isupper()}
    source = "\n".join(
        path.read_text(encoding="utf-8").lower()
        for path in (REPOSITORY / "archive_node").rglob("*.py")
        if "conformance" not in path.parts
    )
    for code in codes:
        assert code in named or f"0x{code:04x}" in source, f"0x{code:04X} is not in the code"
    assert {status.NOT_AUTHORISED, status.UID_CONFLICT, status.MOVE_DESTINATION_UNKNOWN} <= codes


# -- 3: the services of the configuration given ------------------------------------------------


def test_default_config_lists_no_hl7_and_no_tls_port():
    text = statement()
    assert "HL7 v2 interface" not in text and "MLLP" not in text
    assert "DICOM TLS is not offered on a port of its own: `tls.port` is 0." in text
    assert "the node neither accepts nor opens TLS connections" in text
    assert "| DICOM (unencrypted), PS3.8 TCP/IP | 0.0.0.0:11112 |" in text
    assert "ECDHE-RSA-AES128-GCM-SHA256" not in text


def test_hl7_on_lists_the_messages_taken():
    text = statement(hl7={"port": 2575})
    assert "## 7 HL7 v2 interface" in text
    assert "| HL7 v2 over MLLP (section 7) | 0.0.0.0:2575 |" in text
    for kind, event in hl7_messages.ORDER_TYPES:
        assert f"{kind}^{event}" in text
    for event in (*hl7_messages.UPDATE_EVENTS, hl7_messages.MERGE_EVENT):
        assert f"ADT^{event}" in text
    assert "| `hl7.max_message_bytes` |" in text


def test_tls_only_node_lists_no_plain_port_and_the_tls_profile():
    text = statement(node={"port": 0}, tls={"port": 2762, **TLS_FILES})
    assert "No plain (unencrypted) DICOM port: `node.port` is 0." in text
    assert "DICOM (unencrypted)" not in text and "plain DICOM on TCP port" not in text
    assert "| DICOM over TLS, PS3.15 B.9 (section 6) | 0.0.0.0:2762 |" in text
    assert "The TLS port 2762 (`tls.port`) implements the BCP 195" in text
    assert "| `ECDHE-RSA-AES128-GCM-SHA256` |  |" in text
    assert (
        "| `DHE-RSA-AES128-GCM-SHA256` | not negotiated: the node loads no DH parameters |" in text
    )
    assert "not offered on a port of its own" not in text
    assert "| `tls.require_client_certificate` | `true` | `true` |" in text
    for path in TLS_FILES.values():
        assert path not in text  # file paths are not the peers' business


def test_both_ports_and_tls_files_without_a_tls_port():
    both = statement(tls={"port": 2762, **TLS_FILES})
    assert "DICOM (unencrypted)" in both and "DICOM over TLS" in both
    calling_only = statement(tls=TLS_FILES)
    assert "DICOM TLS is not offered on a port of its own" in calling_only
    assert "calls AEs registered `--tls required` over TLS 1.2 or 1.3" in calling_only


def test_the_values_shown_are_the_effective_ones():
    text = statement(
        node={"ae_title": "REGION_PACS", "max_pdu": 65536, "max_associations_per_address": 4},
        audit={"enabled": False},
    )
    assert "#### 3.2.1 REGION_PACS AE" in text
    assert "The maximum PDU length the node receives is 65536 bytes" in text
    assert "| `node.max_pdu` | `65536` | `1048576` |" in text
    assert "at most 4 from one peer IP address" in text
    assert "The audit trail is off (`audit.enabled` = false)" in text
    assert "| Security Alert | 110113 |" not in text


# -- 4: the command --------------------------------------------------------------------------


def test_conformance_prints_the_statement_and_creates_nothing(
    tmp_path, monkeypatch, no_node_environment
):
    monkeypatch.chdir(tmp_path)
    result = ok("conformance")
    assert result.stdout == conformance_statement(build_config({}))
    assert list(tmp_path.iterdir()) == []  # no var/, no index, no store


def test_conformance_output_writes_the_file_only(tmp_path, monkeypatch, no_node_environment):
    monkeypatch.chdir(tmp_path)
    result = ok("conformance", "--output", "statement.md")
    assert "# DICOM Conformance Statement" not in result.stdout
    assert (tmp_path / "statement.md").read_text(encoding="utf-8") == conformance_statement(
        build_config({})
    )
    assert [p.name for p in tmp_path.iterdir()] == ["statement.md"]


def test_conformance_follows_the_config_file(tmp_path, monkeypatch, no_node_environment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "node.toml").write_text('[hl7]\nport = 2575\n[node]\nae_title = "RPACS"\n')
    text = ok("--config", "node.toml", "conformance").stdout
    expected = build_config({"hl7": {"port": 2575}, "node": {"ae_title": "RPACS"}}, "node.toml")
    assert text == conformance_statement(expected)
    assert "HL7 v2 interface" in text and "RPACS AE" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "missing.toml: no such config file"),
        ("[node\n", "not valid TOML"),
        ("[node]\nmax_pdu = 1\n", "node.max_pdu: 1 is below the minimum"),
        ("[tls]\nport = 2762\n", "tls.certificate: must be set when tls.port is set"),
    ],
    ids=["missing", "not-toml", "out-of-range", "tls-without-files"],
)
def test_a_bad_config_is_one_line(tmp_path, monkeypatch, no_node_environment, content, expected):
    monkeypatch.chdir(tmp_path)
    name = "missing.toml"
    if content is not None:
        name = "bad.toml"
        (tmp_path / name).write_text(content)
    line = fails("conformance", "--config", name)
    assert expected in line
    assert not (tmp_path / "var").exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, no_node_environment):
    monkeypatch.chdir(tmp_path)
    line = fails("conformance", "--output", str(tmp_path / "no-such-dir" / "statement.md"))
    assert "statement.md" in line
    assert list(tmp_path.iterdir()) == []


def test_conformance_has_help():
    result = cli_run("conformance", "--help")
    assert result.exit_code == 0
    assert "--output" in result.output and "--config" in result.output
