"""Deterministic synthetic index corpora: many studies across thousands of patients, written
straight into the index tables in bulk (no files: query benchmarks never open them)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from archive_node.index import Index
from archive_node.index.schema import study_spans
from archive_node.index.tables import Hospital, Instance, Patient, Series, Study
from archive_node.rules.matching import name_key

HOSPITALS = ("UNN", "NLSH", "HF", "FIN")
FAMILY = [
    "ØDEGÅRD",
    "HANSEN",
    "JOHANSEN",
    "OLSEN",
    "LARSEN",
    "ANDERSEN",
    "PEDERSEN",
    "NILSEN",
    "KRISTIANSEN",
    "JENSEN",
    "KARLSEN",
    "JOHNSEN",
    "PETTERSEN",
    "ERIKSEN",
    "BERG",
    "HAUGEN",
    "HAGEN",
    "JOHANNESSEN",
    "ANDREASSEN",
    "JACOBSEN",
    "DAHL",
    "JØRGENSEN",
    "HALVORSEN",
    "HENRIKSEN",
    "LUND",
    "SØRENSEN",
    "JAKOBSEN",
    "MOEN",
    "GUNDERSEN",
    "IVERSEN",
    "STRAND",
    "SOLBERG",
    "SVENDSEN",
    "ÆRØ",
    "EIDE",
    "KNUTSEN",
    "MARTINSEN",
    "PAULSEN",
    "BAKKEN",
    "KRISTENSEN",
    "MATHISEN",
    "LIE",
    "AMUNDSEN",
    "NGUYEN",
    "RASMUSSEN",
]
GIVEN = [
    "ÅSE",
    "OLA",
    "KARI",
    "NILS",
    "INGRID",
    "BJØRN",
    "SIGRID",
    "KNUT",
    "SOLVEIG",
    "PER",
    "ANNE",
    "LARS",
    "LIV",
    "ØYVIND",
    "MARIT",
]
MODALITIES = ("US", "US", "US", "XC", "XC", "ES", "CT", "MR", "DX", "OT")
FIRST_DAY = date(2015, 1, 1)
DAYS = 11 * 365
UID_ROOT = "2.25.1234"


@dataclass(frozen=True)
class Corpus:
    studies: int
    patients: int
    series: int
    instances: int
    seed: int

    def patient_id(self, number: int) -> str:
        return f"PID{number:07d}"

    def accession(self, number: int) -> str:
        return f"A{number:09d}"

    def study_uid(self, number: int) -> str:
        return f"{UID_ROOT}.{self.seed}.1.{number}"


def populate(index: Index, studies: int, seed: int = 1, batch: int = 2000) -> Corpus:
    """Write `studies` studies (1-2 series of 1-2 instances each) for studies/4 patients in four
    hospitals, dates spread over 2015-2025. The same seed gives the same corpus."""
    rng = random.Random(seed)
    n_patients = max(1, studies // 4)
    series_count = instance_count = 0
    with index.session(write=True):
        hospitals = {}
        for code in HOSPITALS:
            row = Hospital.get_or_none(Hospital.code == code)
            hospitals[code] = (
                row.id if row else Hospital.create(code=code, name=code, issuer=code).id
            )
        for start in range(0, n_patients, batch):
            rows = []
            for number in range(start, min(start + batch, n_patients)):
                name = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"
                birth_date = f"{rng.randint(1930, 2020)}0101"
                rows.append(
                    {
                        "patient_id": f"PID{number:07d}",
                        "issuer": HOSPITALS[number % len(HOSPITALS)],
                        "patient_name": name,
                        "name_key": name_key(name),
                        "birth_date": birth_date,
                        "birth_key": birth_date,  # already a valid YYYYMMDD
                        "sex": rng.choice("FMO"),
                    }
                )
            Patient.insert_many(rows).execute()
        patient_pks = [pk for (pk,) in Patient.select(Patient.id).order_by(Patient.id).tuples()]
        corpus = Corpus(studies, n_patients, 0, 0, seed)
        for start in range(0, studies, batch):
            study_rows, plan = [], []
            for number in range(start, min(start + batch, studies)):
                day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
                study_date = day.strftime("%Y%m%d")
                study_time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}00"
                patient = rng.randrange(n_patients)
                hospital = hospitals[HOSPITALS[patient % len(HOSPITALS)]]
                study_rows.append(
                    {
                        "study_uid": corpus.study_uid(number),
                        "patient": patient_pks[patient],
                        "hospital": hospital,
                        "study_date": study_date,
                        "study_time": study_time,
                        "accession_number": corpus.accession(number),
                        "study_id": str(number),
                        "description": "Synthetic study",
                        **study_spans(study_date, study_time),
                    }
                )
                plan.append((number, hospital, rng.randint(1, 2)))
            Study.insert_many(study_rows).execute()
            first = corpus.study_uid(start)
            study_pks = dict(
                Study.select(Study.study_uid, Study.id)
                .where(Study.study_uid.in_([r["study_uid"] for r in study_rows]))
                .tuples()
            )
            series_rows = []
            for number, _hospital, n_series in plan:
                for s in range(n_series):
                    series_rows.append(
                        {
                            "series_uid": f"{corpus.study_uid(number)}.{s + 1}",
                            "study": study_pks[corpus.study_uid(number)],
                            "modality": rng.choice(MODALITIES),
                            "series_number": s + 1,
                        }
                    )
            Series.insert_many(series_rows).execute()
            series_pks = dict(
                Series.select(Series.series_uid, Series.id)
                .where(Series.series_uid.in_([r["series_uid"] for r in series_rows]))
                .tuples()
            )
            hospital_of = {corpus.study_uid(n): h for n, h, _ in plan}
            instance_rows = []
            for row in series_rows:
                study_uid = row["series_uid"].rsplit(".", 1)[0]
                for i in range(rng.randint(1, 2)):
                    instance_rows.append(
                        {
                            "sop_uid": f"{row['series_uid']}.{i + 1}",
                            "series": series_pks[row["series_uid"]],
                            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                            "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                            "instance_number": i + 1,
                            "path": f"bench/{row['series_uid']}.{i + 1}.dcm",
                            "size": 10_000,
                            "sha256": "0" * 64,
                            "calling_ae": "BENCH",
                            "hospital": hospital_of[study_uid],
                        }
                    )
            Instance.insert_many(instance_rows).execute()
            series_count += len(series_rows)
            instance_count += len(instance_rows)
            del first
    return Corpus(studies, n_patients, series_count, instance_count, seed)
