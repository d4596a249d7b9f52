"""Index rows of the registry: hospitals and their AEs (the allowlist)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from peewee import fn

from ..errors import Conflict, NotFound
from ..rules.tls import short_fingerprint
from .clock import utcnow
from .records import AERecord, HospitalRecord
from .session import Role
from .tables import AECertificate, ApplicationEntity, Hospital, Instance, Study

_AE_FIELDS = (
    "host",
    "port",
    "allow",
    "scope",
    "description",
    "enabled",
    "max_associations",
    "tls",
)


class RegistryRows(Role):
    """Hospitals and AEs: added, changed, removed, looked up (every association asks)."""

    def add_hospital(
        self, code: str, name: str, issuer: str, placeholder_ids: tuple[str, ...] = ()
    ) -> HospitalRecord:
        with self.session(write=True):
            if Hospital.get_or_none(Hospital.code == code):
                raise Conflict(f"hospital {code} already exists")
            Hospital.create(
                code=code, name=name, issuer=issuer, placeholder_ids=_stored(placeholder_ids)
            )
        return HospitalRecord(code, name, issuer, placeholder_ids=placeholder_ids)

    def update_hospital(
        self, code: str, *, name: str | None = None, placeholder_ids: tuple[str, ...] | None = None
    ) -> HospitalRecord:
        """Change a hospital's name or placeholder IDs (its issuer is its patients' identity,
        never changed). Raises NotFound."""
        with self.session(write=True):
            row = Hospital.get_or_none(Hospital.code == code)
            if row is None:
                raise NotFound(f"no hospital {code}")
            if name is not None:
                row.name = name
            if placeholder_ids is not None:
                row.placeholder_ids = _stored(placeholder_ids)
            row.save()
        (record,) = (h for h in self.list_hospitals() if h.code == code)
        return record

    def list_hospitals(self) -> list[HospitalRecord]:
        with self.session():
            ae_counts = dict(
                cast(
                    Iterable[tuple[int, int]],
                    ApplicationEntity.select(
                        ApplicationEntity.hospital, fn.COUNT(ApplicationEntity.id)
                    )
                    .group_by(ApplicationEntity.hospital)
                    .tuples(),
                )
            )
            study_counts = dict(
                cast(
                    Iterable[tuple[int, int]],
                    Study.select(Study.hospital, fn.COUNT(Study.id))
                    .group_by(Study.hospital)
                    .tuples(),
                )
            )
            return [
                HospitalRecord(
                    h.code,
                    h.name,
                    h.issuer,
                    ae_counts.get(h.id, 0),
                    study_counts.get(h.id, 0),
                    tuple(v for v in h.placeholder_ids.split("\\") if v),
                )
                for h in Hospital.select().order_by(Hospital.code)
            ]

    def remove_hospital(self, code: str) -> None:
        """Raises NotFound, or Conflict while AEs, studies or instances refer to it."""
        with self.session(write=True):
            row = Hospital.get_or_none(Hospital.code == code)
            if row is None:
                raise NotFound(f"no hospital {code}")
            aes = ApplicationEntity.select().where(ApplicationEntity.hospital == row).count()
            studies = Study.select().where(Study.hospital == row).count()
            instances = Instance.select().where(Instance.hospital == row).count()
            if aes or studies or instances:
                raise Conflict(
                    f"hospital {code} is still referred to by {aes} AE(s) and {studies} "
                    f"study(ies){f' and {instances} instance(s)' if instances else ''}"
                )
            row.delete_instance()

    # -- application entities -----------------------------------------------------------------

    def add_ae(
        self,
        ae_title: str,
        hospital: str,
        certificates: tuple[str, ...] = (),
        **fields: Any,
    ) -> AERecord:
        """Raises NotFound (no hospital), Conflict (the title exists, or a certificate is bound
        to another AE)."""
        with self.session(write=True):
            owner = Hospital.get_or_none(Hospital.code == hospital)
            if owner is None:
                raise NotFound(f"no hospital {hospital}")
            if ApplicationEntity.get_or_none(ApplicationEntity.ae_title == ae_title):
                raise Conflict(f"AE {ae_title} already exists")
            row = ApplicationEntity.create(ae_title=ae_title, hospital=owner, **fields)
            _bind(row, certificates)
        return self.get_ae(ae_title)

    def update_ae(
        self,
        ae_title: str,
        hospital: str | None = None,
        certificates: tuple[str, ...] | None = None,
        **fields: Any,
    ) -> AERecord:
        """Change the fields given; `certificates` replaces the bound ones (() unbinds all).
        Raises NotFound, Conflict (a certificate bound to another AE)."""
        unknown = set(fields) - set(_AE_FIELDS)
        if unknown:
            raise ValueError(f"unknown AE fields {unknown}")
        with self.session(write=True):
            row = ApplicationEntity.get_or_none(ApplicationEntity.ae_title == ae_title)
            if row is None:
                raise NotFound(f"no AE {ae_title}")
            if hospital is not None:
                owner = Hospital.get_or_none(Hospital.code == hospital)
                if owner is None:
                    raise NotFound(f"no hospital {hospital}")
                row.hospital = owner
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            row.save()
            if certificates is not None:
                AECertificate.delete().where(AECertificate.ae == row).execute()
                _bind(row, certificates)
        return self.get_ae(ae_title)

    def certificate_owner(self, fingerprint: str) -> str | None:
        """The title of the AE a client certificate is bound to, or None."""
        with self.session():
            row = (
                ApplicationEntity.select(ApplicationEntity.ae_title)
                .join(AECertificate)
                .where(AECertificate.fingerprint == fingerprint)
                .first()
            )
            return row.ae_title if row else None

    def remove_ae(self, ae_title: str) -> None:
        with self.session(write=True):
            owned = ApplicationEntity.select(ApplicationEntity.id).where(
                ApplicationEntity.ae_title == ae_title
            )
            AECertificate.delete().where(AECertificate.ae.in_(owned)).execute()
            deleted = (
                ApplicationEntity.delete().where(ApplicationEntity.ae_title == ae_title).execute()
            )
            if not deleted:
                raise NotFound(f"no AE {ae_title}")

    def find_ae(self, ae_title: str) -> AERecord | None:
        """The registered AE with this title, or None."""
        with self.session():
            query = self._ae_query().where(ApplicationEntity.ae_title == ae_title)
            row = query.first()
            if row is None:
                return None
            return _ae_record(row, _certificates(AECertificate.ae == row.id).get(row.id, ()))

    def get_ae(self, ae_title: str) -> AERecord:
        record = self.find_ae(ae_title)
        if record is None:
            raise NotFound(f"no AE {ae_title}")
        return record

    def list_aes(self, hospital: str | None = None) -> list[AERecord]:
        with self.session():
            query = self._ae_query().order_by(Hospital.code, ApplicationEntity.ae_title)
            if hospital:
                query = query.where(Hospital.code == hospital)
            bound = _certificates(None)
            return [_ae_record(row, bound.get(row.id, ())) for row in query]

    @staticmethod
    def _ae_query():
        return ApplicationEntity.select(ApplicationEntity, Hospital).join(Hospital)

    def hospital_issuer(self, code: str) -> str | None:
        """The Issuer of Patient ID of hospital `code`, or None when there is no such hospital."""
        with self.session():
            row = Hospital.get_or_none(Hospital.code == code)
            return row.issuer if row is not None else None


def _stored(placeholder_ids: tuple[str, ...]) -> str:
    """Placeholder IDs as hospital.placeholder_ids holds them: an LO never holds a backslash."""
    return "\\".join(placeholder_ids)


def _bind(row: ApplicationEntity, certificates: tuple[str, ...]) -> None:
    """Bind client certificates to the AE of `row`; Conflict if one is another AE's."""
    for fingerprint in certificates:
        taken = AECertificate.get_or_none(AECertificate.fingerprint == fingerprint)
        if taken is not None and taken.ae_id != row.id:  # type: ignore[attr-defined]
            shown = short_fingerprint(fingerprint)
            raise Conflict(
                f"certificate {shown} is bound to AE {taken.ae.ae_title}: a certificate opens "
                "one AE only (unbind it there first)"
            )
        if taken is None:
            AECertificate.create(fingerprint=fingerprint, ae=row)


def _certificates(where: Any | None) -> dict[int, tuple[str, ...]]:
    """Bound fingerprints by AE row id, of the AEs `where` selects (None: every AE)."""
    bound: dict[int, list[str]] = {}
    query = AECertificate.select(AECertificate.ae, AECertificate.fingerprint)
    if where is not None:
        query = query.where(where)
    rows = query.order_by(AECertificate.created_at, AECertificate.fingerprint).tuples()
    for ae_id, fingerprint in cast(Iterable[tuple[int, str]], rows):
        bound.setdefault(ae_id, []).append(fingerprint)
    return {ae_id: tuple(prints) for ae_id, prints in bound.items()}


def _ae_record(row: ApplicationEntity, certificates: tuple[str, ...] = ()) -> AERecord:
    return AERecord(
        ae_title=row.ae_title,
        hospital=row.hospital.code,
        issuer=row.hospital.issuer,
        host=row.host,
        port=row.port,
        allow=row.allow,
        scope=row.scope,
        description=row.description,
        enabled=row.enabled,
        max_associations=row.max_associations,
        tls=row.tls,
        certificates=certificates,
    )
