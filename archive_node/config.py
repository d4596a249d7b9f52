"""Read and validate the node's TOML configuration; every key is declared once below."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .dicom.values import ae_title_problem, is_valid_uid
from .errors import ConfigError

CONFIG_ENV = "ARCHIVE_NODE_CONFIG"
INDEX_URL_ENV = "ARCHIVE_NODE_INDEX_URL"
UID_ROOT_MAX = 40  # a 64-character UID then keeps 23 digits (76 bits) of its own
# The speed patches node.fast_paths may name (net/patches/; a test keeps the two lists equal).
SPEED_PATCHES = ("reactor", "messages", "file_sending", "file_meta")


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its type, default and a line of help."""

    section: str
    key: str
    type: type[Any]
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "node",
        "ae_title",
        str,
        "ARCHIVE",
        "Our AE title; an association that calls another title is rejected.",
    ),
    Setting("node", "bind", str, "0.0.0.0", "Address to listen on."),
    Setting(
        "node",
        "port",
        int,
        11112,
        "TCP port of plain (unencrypted) DICOM (104 needs CAP_NET_BIND_SERVICE); 0 turns it "
        "off, for a node that speaks only TLS (tls.port).",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "node",
        "max_associations",
        int,
        32,
        "Most associations served at once; more are rejected (local limit exceeded).",
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "node",
        "max_associations_per_address",
        int,
        0,
        "Most associations served at once for one peer IP address (0: only max_associations "
        "applies); more are rejected (local limit exceeded).",
        minimum=0,
        maximum=1000,
    ),
    Setting(
        "node",
        "max_pending_connections",
        int,
        64,
        "Most TCP connections that have not yet completed their A-ASSOCIATE-RQ; more are "
        "closed at once. They never take an association slot.",
        minimum=1,
        maximum=10000,
    ),
    Setting(
        "node",
        "listen_backlog",
        int,
        256,
        "Connections the kernel queues before the node accepts them (a burst of modalities "
        "connecting at once); capped by net.core.somaxconn.",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "node",
        "max_pdu",
        int,
        1048576,
        "Largest PDU we receive, in bytes (bigger PDUs move large objects faster).",
        minimum=4096,
        maximum=16777216,
    ),
    Setting(
        "node",
        "acse_timeout",
        float,
        30.0,
        "Seconds a connection has, from accept, to complete its A-ASSOCIATE-RQ (the ARTIM "
        "timer, PS3.8 9.1.5), and to wait for other negotiation messages.",
        minimum=1,
    ),
    Setting(
        "node",
        "connect_timeout",
        float,
        10.0,
        "Seconds to wait for a TCP connection to a C-MOVE destination.",
        minimum=1,
    ),
    Setting(
        "node", "dimse_timeout", float, 60.0, "Seconds to wait for a DIMSE message.", minimum=1
    ),
    Setting(
        "node",
        "network_timeout",
        float,
        60.0,
        "Seconds an idle association is kept open.",
        minimum=1,
    ),
    Setting(
        "node",
        "shutdown_grace",
        float,
        30.0,
        "Seconds running associations get to finish after SIGTERM before they are aborted.",
        minimum=0,
    ),
    Setting(
        "node",
        "workers",
        int,
        0,
        "Processes serving the port (SO_REUSEPORT), each computing on one core; 0: one per "
        "core the node may use (its CPU affinity and cgroup CPU quota).",
        minimum=0,
        maximum=64,
    ),
    Setting(
        "node",
        "uid_root",
        str,
        "",
        "Root of the UIDs the node makes (studies, series and instances of imported media): "
        "your organisation's registered root, e.g. 1.2.826.0.1.3680043.10.1234, at most "
        f"{UID_ROOT_MAX} characters. Empty: UUID-derived 2.25 UIDs (PS3.5 B.2).",
    ),
    Setting(
        "node",
        "fast_paths",
        bool,
        True,
        "Use the node's speed patches of pynetdicom (event-driven loops, responses packed by "
        "hand, files sent straight to the socket); false runs pynetdicom's own code there; a "
        f"list takes only the patches named ({', '.join(SPEED_PATCHES)}).",
    ),
    Setting(
        "node",
        "untested_pynetdicom",
        bool,
        False,
        "Start on a pynetdicom release the node's patches were not taken from, provided "
        "every function they replace is unchanged (checked at start either way).",
    ),
    Setting(
        "storage",
        "path",
        str,
        "var/storage",
        "Directory of the filesystem store (relative paths are relative to the working "
        "directory).",
    ),
    Setting(
        "storage",
        "min_free_mb",
        int,
        1024,
        "Free-space reserve in MiB: below it C-STORE answers 0xA700 and stores nothing.",
        minimum=0,
    ),
    Setting(
        "storage",
        "on_duplicate",
        str,
        "keep",
        "A SOP Instance UID received again with different bytes: keep the original or replace it.",
        choices=("keep", "replace"),
    ),
    Setting(
        "storage",
        "fsync",
        bool,
        True,
        "fsync each file and its directory before acknowledging (turn off only for tests "
        "on throwaway data).",
    ),
    Setting(
        "index",
        "url",
        str,
        "sqlite:///var/index.sqlite3",
        "Index database: sqlite:///relative/path, sqlite:////absolute/path or "
        "postgresql://user@host:5432/db. ARCHIVE_NODE_INDEX_URL overrides it (keep "
        "passwords there).",
    ),
    Setting(
        "index",
        "busy_timeout",
        float,
        10.0,
        "Seconds a write waits for a locked SQLite database, or a PostgreSQL lock.",
        minimum=0.01,
    ),
    Setting(
        "query",
        "max_results",
        int,
        5000,
        "Most matches one C-FIND answers; past it the SCU gets that many and a final 0xA700 "
        "telling it to narrow the query.",
        minimum=1,
    ),
    Setting(
        "query",
        "max_identifier_bytes",
        int,
        4194304,
        "Largest C-FIND, C-MOVE or C-GET identifier (or Storage Commitment request) in bytes; "
        "a bigger one is refused with a status, the association kept.",
        minimum=1024,
        maximum=268435456,
    ),
    Setting(
        "tls",
        "port",
        int,
        0,
        "TCP port of DICOM over TLS (PS3.15 B.9; IANA's dicom-tls port is 2762); 0 turns it "
        "off. Needs tls.certificate, tls.private_key and tls.ca_certificates.",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "tls",
        "certificate",
        str,
        "",
        "The node's certificate (PEM, with its intermediate CAs after it): shown to peers on "
        "the TLS port and to C-MOVE destinations and commitment call-backs that need TLS. "
        "Re-read on SIGHUP.",
    ),
    Setting(
        "tls",
        "private_key",
        str,
        "",
        "The private key of tls.certificate (PEM, unencrypted; readable only by the node's "
        "user). Re-read on SIGHUP.",
    ),
    Setting(
        "tls",
        "ca_certificates",
        str,
        "",
        "The CAs that sign peers' certificates (a PEM file, or a directory prepared with "
        "openssl rehash); a peer's certificate must chain to one of them. Re-read on SIGHUP.",
    ),
    Setting(
        "tls",
        "require_client_certificate",
        bool,
        True,
        "A TLS association without a client certificate is rejected (calling AE not "
        "recognized); false lets AEs with no bound certificate connect encrypted only.",
    ),
    Setting(
        "tls",
        "handshake_timeout",
        float,
        10.0,
        "Seconds a connection to the TLS port has for its TLS handshake; it runs on the "
        "connection's own thread, never the accepting one.",
        minimum=0.1,
    ),
    Setting(
        "commitment",
        "retry_interval",
        float,
        30.0,
        "Seconds before a Storage Commitment report that could not be delivered is tried "
        "again; each further failure doubles the wait, up to an hour.",
        minimum=0.01,
    ),
    Setting(
        "commitment",
        "give_up_after",
        float,
        72.0,
        "Hours after the request that an undelivered Storage Commitment report is abandoned "
        "(logged as an error).",
        minimum=0.0,
    ),
    Setting(
        "commitment",
        "max_verify_bytes",
        int,
        68719476736,
        "Most bytes of stored files one Storage Commitment request re-reads to check their "
        "SHA-256; references past it fail (0x0110) and may be asked for again.",
        minimum=1,
    ),
    Setting(
        "audit",
        "enabled",
        bool,
        True,
        "Keep the audit trail (PS3.15 A.5: who stored, queried and retrieved which patient's "
        "studies; admin changes). Off, nothing is accounted for: for benchmarks only.",
    ),
    Setting(
        "audit",
        "source_id",
        str,
        "",
        "This node's name in the trail and its Audit Source ID (its own hash chain); empty: "
        "node.ae_title. Give each node sharing one index its own.",
    ),
    Setting(
        "audit",
        "retain_days",
        int,
        0,
        "Whole days audit records are kept; older ones are pruned daily by a running node "
        "and by `archive-node audit prune` (0: kept forever). Records not yet exported stay.",
        minimum=0,
    ),
    Setting(
        "audit",
        "repository",
        str,
        "",
        "Audit Record Repository that receives each record as a DICOM audit message in "
        "syslog: tls://host:6514, tcp://host:514 or udp://host:514 (empty: none).",
    ),
    Setting(
        "audit",
        "ca_certificates",
        str,
        "",
        "PEM file of the CAs that verify a tls:// repository's certificate.",
    ),
    Setting(
        "audit",
        "certificate",
        str,
        "",
        "PEM certificate the node presents to a tls:// repository that asks for one.",
    ),
    Setting(
        "audit",
        "private_key",
        str,
        "",
        "PEM private key (unencrypted) of audit.certificate.",
    ),
    Setting(
        "audit",
        "max_alerts_per_minute",
        int,
        60,
        "Security Alert records (rejected associations, refused requests) kept per peer "
        "address and minute; more are counted into the next one, so a flood cannot fill the "
        "trail.",
        minimum=1,
    ),
    Setting(
        "lifecycle",
        "delete_rejected_after",
        int,
        30,
        "Days after which instances rejected as 113038 (incorrect worklist entry) or 113039 "
        "(retention expired) are deleted, their files removed (0: at once; a running node "
        "deletes what is due every minute). 113001 and 113037 stay hidden until an admin "
        "decides.",
        minimum=0,
        maximum=36500,
    ),
    Setting(
        "hl7",
        "bind",
        str,
        "0.0.0.0",
        "Address the HL7 v2 (MLLP) listener binds to.",
    ),
    Setting(
        "hl7",
        "port",
        int,
        0,
        "TCP port of the HL7 v2 listener (MLLP) taking orders (ORM^O01, OMI^O23) and patient "
        "updates (ADT) from the senders registered with `archive-node hl7 add-sender`; 0 "
        "turns it off (2575 is HL7's registered port).",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "hl7",
        "max_message_bytes",
        int,
        1048576,
        "Largest HL7 message taken; a longer one is answered AR and not applied.",
        minimum=1024,
        maximum=64 * 1048576,
    ),
    Setting(
        "hl7",
        "max_connections",
        int,
        20,
        "HL7 connections open at once; one more is closed at once.",
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "hl7",
        "idle_timeout",
        float,
        300.0,
        "Seconds an HL7 connection may stay silent, or take to send one message, before it "
        "is closed.",
        minimum=1.0,
    ),
    Setting(
        "hl7",
        "remember_days",
        int,
        7,
        "Days a message control ID (MSH-10) is remembered: a resend within them is "
        "acknowledged and not applied again.",
        minimum=1,
        maximum=3650,
    ),
    Setting(
        "metrics",
        "bind",
        str,
        "127.0.0.1",
        "Address of the HTTP endpoint for Prometheus (/metrics) and load balancers (/healthz, "
        "/readyz); it has no authentication: keep it on the loopback or a management network.",
    ),
    Setting(
        "metrics",
        "port",
        int,
        9110,
        "TCP port of that endpoint; 0 turns it off.",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "log",
        "level",
        str,
        "INFO",
        "Log level of archive-node's own messages.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "log",
        "pynetdicom_level",
        str,
        "WARNING",
        "Log level of pynetdicom (DEBUG dumps whole PDUs, patient data included).",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "log",
        "format",
        str,
        "text",
        "text: one line per record; json: one JSON object per line (time, level, logger, "
        "event, and the record's fields: AE, hospital, peer, status, duration), for journald "
        "and log shippers.",
        choices=("text", "json"),
    ),
)


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str
    bind: str
    port: int
    max_associations: int
    max_associations_per_address: int
    max_pending_connections: int
    listen_backlog: int
    max_pdu: int
    acse_timeout: float
    connect_timeout: float
    dimse_timeout: float
    network_timeout: float
    shutdown_grace: float
    workers: int
    uid_root: str
    fast_paths: bool | tuple[str, ...]  # True, False, or the speed patches to take
    untested_pynetdicom: bool


@dataclass(frozen=True)
class StorageConfig:
    path: Path
    min_free_mb: int
    on_duplicate: str
    fsync: bool


@dataclass(frozen=True)
class IndexConfig:
    url: str
    busy_timeout: float


@dataclass(frozen=True)
class QueryConfig:
    max_results: int
    max_identifier_bytes: int


@dataclass(frozen=True)
class TlsConfig:
    port: int
    certificate: str
    private_key: str
    ca_certificates: str
    require_client_certificate: bool
    handshake_timeout: float

    @property
    def configured(self) -> bool:
        """Whether the node has its certificate, key and CAs (for its TLS port, or for
        associations it opens to AEs that need TLS)."""
        return bool(self.certificate and self.private_key and self.ca_certificates)


@dataclass(frozen=True)
class CommitmentConfig:
    retry_interval: float
    give_up_after: float
    max_verify_bytes: int


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool
    source_id: str
    retain_days: int
    repository: str
    ca_certificates: str
    certificate: str
    private_key: str
    max_alerts_per_minute: int


@dataclass(frozen=True)
class LifecycleConfig:
    delete_rejected_after: int


@dataclass(frozen=True)
class Hl7Config:
    bind: str
    port: int
    max_message_bytes: int
    max_connections: int
    idle_timeout: float
    remember_days: int


@dataclass(frozen=True)
class MetricsConfig:
    bind: str
    port: int


@dataclass(frozen=True)
class LogConfig:
    level: str
    pynetdicom_level: str
    format: str


@dataclass(frozen=True)
class Config:
    node: NodeConfig
    storage: StorageConfig
    index: IndexConfig
    query: QueryConfig
    tls: TlsConfig
    commitment: CommitmentConfig
    audit: AuditConfig
    lifecycle: LifecycleConfig
    hl7: Hl7Config
    metrics: MetricsConfig
    log: LogConfig
    source: str = "built-in defaults"


_SECTIONS = {
    "node": NodeConfig,
    "storage": StorageConfig,
    "index": IndexConfig,
    "query": QueryConfig,
    "tls": TlsConfig,
    "commitment": CommitmentConfig,
    "audit": AuditConfig,
    "lifecycle": LifecycleConfig,
    "hl7": Hl7Config,
    "metrics": MetricsConfig,
    "log": LogConfig,
}


def _coerce(setting: Setting, value: Any) -> Any:
    """Check one value against its declaration; raise ConfigError naming the key."""
    expected = setting.type
    if setting.name == "node.fast_paths" and not isinstance(value, bool):
        return _speed_patches(setting, value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"{setting.name}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{setting.name}: {value!r} is not one of {', '.join(setting.choices)}")
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError(f"{setting.name}: {value!r} is below the minimum {setting.minimum}")
    if setting.maximum is not None and value > setting.maximum:
        raise ConfigError(f"{setting.name}: {value!r} is above the maximum {setting.maximum}")
    if setting.name == "node.uid_root" and value and not _fit_uid_root(value):
        raise ConfigError(
            f"{setting.name}: {value!r} is not a UID root of at most {UID_ROOT_MAX} characters"
        )
    if setting.name == "node.ae_title" and (problem := ae_title_problem(value)):
        raise ConfigError(f"{setting.name}: {value!r}: {problem}")
    return value


def _speed_patches(setting: Setting, value: Any) -> tuple[str, ...]:
    """node.fast_paths as a list: the names of the speed patches to take."""
    if not isinstance(value, list):
        raise ConfigError(
            f"{setting.name}: expected true, false or a list of speed patches, got "
            f"{type(value).__name__} {value!r}"
        )
    unknown = [name for name in value if name not in SPEED_PATCHES]
    if unknown:
        raise ConfigError(
            f"{setting.name}: {', '.join(map(repr, unknown))} is not a speed patch "
            f"(known: {', '.join(SPEED_PATCHES)})"
        )
    return tuple(dict.fromkeys(value))


def _fit_uid_root(value: str) -> bool:
    """A UID (PS3.5 9.1) short enough to leave room for 23 digits of its own below it."""
    return len(value) <= UID_ROOT_MAX and is_valid_uid(value)


def build_config(data: dict[str, Any], source: str = "built-in defaults") -> Config:
    """Turn parsed TOML into a Config, refusing unknown sections and keys. Raises ConfigError
    naming the first problem (config_problems lists them all)."""
    values, problems = _validated(data)
    if problems:
        raise ConfigError(problems[0])
    return Config(
        **{section: cls(**values[section]) for section, cls in _SECTIONS.items()},
        source=source,
    )


def config_problems(data: dict[str, Any]) -> list[str]:
    """Every problem of parsed TOML, one line each, in the order build_config meets them:
    unknown sections and keys, then each key's type, range and choices, then what keys need
    of each other (tls.port, audit.repository, index.url's scheme). Empty: build_config takes
    it."""
    return _validated(data)[1]


def _validated(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The values of every section (defaults where `data` has none or a bad one) and the
    problems found."""
    problems: list[str] = []
    known = {s.name: s for s in SETTINGS}
    tables: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            problems.append(f"[{section}]: unknown section (known: {', '.join(_SECTIONS)})")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a table [{section}]")
            continue
        tables[section] = table
        problems += [
            f"{section}.{key}: unknown key" for key in table if f"{section}.{key}" not in known
        ]
    values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    failed: set[str] = set()
    for setting in SETTINGS:
        raw = tables.get(setting.section, {}).get(setting.key, setting.default)
        try:
            value = _coerce(setting, raw)
        except ConfigError as exc:
            problems.append(str(exc))
            failed.add(setting.name)
            value = setting.default
        values[setting.section][setting.key] = value
    env_url = os.environ.get(INDEX_URL_ENV)
    if env_url:
        values["index"]["url"] = env_url
    values["storage"]["path"] = Path(values["storage"]["path"])
    if not failed & {"tls.port", "tls.certificate", "tls.private_key", "tls.ca_certificates"}:
        problems += _tls_problems(values["tls"])
    if not any(name.startswith("audit.") for name in failed):
        problems += _audit_problems(values["audit"])
    if "index.url" not in failed:
        problems += _index_url_problems(values["index"]["url"], from_env=bool(env_url))
    return values, problems


def _tls_problems(tls: dict[str, Any]) -> list[str]:
    """A TLS port needs the node's certificate, its key and the peers' CAs."""
    if not tls["port"]:
        return []
    return [
        f"tls.{key}: must be set when tls.port is set"
        for key in ("certificate", "private_key", "ca_certificates")
        if not tls[key]
    ]


def _audit_problems(audit: dict[str, Any]) -> list[str]:
    """A repository URL the export can use; a tls:// one needs the CAs that verify it."""
    problems = []
    url = audit["repository"]
    if url:
        scheme, _, rest = url.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme not in ("tls", "tcp", "udp") or not host or not port.isdigit():
            problems.append(
                f"audit.repository: {url!r} is not tls://host:port, tcp://host:port or "
                "udp://host:port"
            )
        elif not 0 < int(port) < 65536:
            problems.append(f"audit.repository: port {port} is out of range")
        if scheme == "tls" and not audit["ca_certificates"]:
            problems.append("audit.ca_certificates: must be set for a tls:// repository")
    if bool(audit["certificate"]) != bool(audit["private_key"]):
        problems.append("audit.certificate and audit.private_key: set both or neither")
    return problems


INDEX_SCHEMES = ("sqlite", "postgresql", "postgres")  # index/database.py opens these


def _index_url_problems(url: str, *, from_env: bool) -> list[str]:
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme in INDEX_SCHEMES:
        return []
    where = f"index.url (from {INDEX_URL_ENV})" if from_env else "index.url"
    return [f"{where}: unsupported scheme {scheme!r} (sqlite or postgresql)"]


def file_problems(config: Config) -> list[str]:
    """What `config check` finds on this machine beyond the values themselves: the TLS and
    audit certificate and key files it names missing or unreadable, a storage path whose
    parent directory does not exist (or that is not a directory)."""
    problems = []
    tls, audit = config.tls, config.audit
    pem_files = [
        ("tls.certificate", tls.certificate, "CERTIFICATE"),
        ("tls.private_key", tls.private_key, "PRIVATE KEY"),
        ("tls.ca_certificates", tls.ca_certificates, "CERTIFICATE"),
        ("audit.ca_certificates", audit.ca_certificates, "CERTIFICATE"),
        ("audit.certificate", audit.certificate, "CERTIFICATE"),
        ("audit.private_key", audit.private_key, "PRIVATE KEY"),
    ]
    for name, path, kind in pem_files:
        if path:
            problem = _pem_problem(Path(path), kind, directory_ok=name.endswith("ca_certificates"))
            if problem:
                problems.append(f"{name}: {path}: {problem}")
    store = config.storage.path
    if store.exists() and not store.is_dir():
        problems.append(f"storage.path: {store}: not a directory")
    elif not store.exists() and not store.absolute().parent.is_dir():
        problems.append(f"storage.path: {store}: its parent directory does not exist")
    return problems


MAX_PEM_FILE = 1 << 20  # a certificate chain or a key is a few KiB


def _pem_problem(path: Path, kind: str, *, directory_ok: bool) -> str | None:
    """Why a PEM file cannot be used (missing, unreadable, not PEM of `kind`), or None; a
    directory of CAs (openssl rehash) is taken as it is where `directory_ok`."""
    if directory_ok and path.is_dir():
        return None
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_PEM_FILE + 1)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if len(text) > MAX_PEM_FILE:
        return "over 1 MiB: not a PEM file"
    if f"{kind}-----".encode() not in text or b"-----BEGIN " not in text:
        return f"no PEM {kind.lower()} in it"
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config from PATH, else $ARCHIVE_NODE_CONFIG, else built-in defaults.

    Raises ConfigError with a one-line message naming the file or key at fault.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    if path is None:
        return build_config({})
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_config(data, source=str(path))


def check_config_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of the config file at `path`, one line each (`archive-node config
    check`): it cannot be read or parsed; else config_problems, then file_problems of the
    config it makes (with the defaults in place of bad values). Empty: it serves."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [f"{path}: no such config file"]
    except OSError as exc:
        return [f"{path}: cannot read: {exc.strerror}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: not valid TOML: {exc}"]
    values, problems = _validated(data)
    config = Config(
        **{section: cls(**values[section]) for section, cls in _SECTIONS.items()},
        source=str(path),
    )
    return problems + file_problems(config)


def example_toml() -> str:
    """Render every setting with its help and default, as in config/archive-node.example.toml."""
    return _render(
        [
            "# archive-node configuration. Every key is optional; the values shown are the "
            "defaults.",
            "# Pass it with --config FILE or ARCHIVE_NODE_CONFIG=FILE.",
        ],
        lambda setting: setting.default,
    )


MASK = "***"


def effective_toml(config: Config) -> str:
    """Every setting with its help and the value in effect in `config`: valid TOML that loads
    back to the same Config, but for a password in index.url, shown as MASK."""
    env_url = os.environ.get(INDEX_URL_ENV)

    def value(setting: Setting) -> Any:
        kept = getattr(getattr(config, setting.section), setting.key)
        if setting.name == "index.url":
            return masked_url(kept)
        return str(kept) if isinstance(kept, Path) else kept

    notes = {"index.url": f"In effect from {INDEX_URL_ENV}, which overrides the file."}
    return _render(
        [
            f"# archive-node configuration in effect: {config.source}, with the defaults of "
            "the keys it leaves out.",
            "# Pass it with --config FILE or ARCHIVE_NODE_CONFIG=FILE.",
        ],
        value,
        notes if env_url else {},
    )


def masked_url(url: str) -> str:
    """A database URL with its password (in the authority, or a password= parameter)
    replaced by MASK, for printing."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if key.lower() == "password" else f"{key}={item}"
        for key, item in parse_qsl(parts.query, keep_blank_values=True)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _render(
    header: list[str], value: Callable[[Setting], Any], notes: dict[str, str] | None = None
) -> str:
    lines = list(header)
    section = None
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            lines += ["", f"[{section}]"]
        help_text = setting.help
        if setting.choices:
            help_text += f" One of: {', '.join(setting.choices)}."
        lines.append(f"# {help_text}")
        if notes and setting.name in notes:
            lines.append(f"# {notes[setting.name]}")
        lines.append(f"{setting.key} = {_toml_value(value(setting))}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # a TOML basic string: JSON's escapes are TOML's, but DEL must be escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)
