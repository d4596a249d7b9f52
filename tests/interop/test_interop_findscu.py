"""Interoperability of the node's C-FIND SCP with DCMTK's findscu, on both index backends."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dcmtk import TIMEOUT, output
from tests.helpers.dimse import store

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("findscu") is None, reason="DCMTK findscu not installed"),
]

NAME = "ØDEGÅRD^ÅSE"
GREEK = "ΝΙΚΟΛΑΟΥ^ΕΛΕΝΗ"
# Always allowed in a response beside the requested keys (PS3.4 C.4.1.1.3.2, C.6.1.1.x).
NODE_KEYS = {
    "QueryRetrieveLevel",
    "RetrieveAETitle",
    "InstanceAvailability",
    "SpecificCharacterSet",
}


@dataclass
class Archive:
    """What was stored: studies by a short name, with their series and instances."""

    studies: dict[str, Dataset]  # one instance of each study
    series: dict[str, list[Dataset]]  # StudyInstanceUID -> one instance of each series
    instances: dict[str, list[Dataset]]  # SeriesInstanceUID -> its instances


@pytest.fixture
def archive(node) -> Archive:
    """Four patients: ØDEGÅRD^ÅSE in Latin-1 (CT + SC study) and in UTF-8, an ASCII name from
    NLSH, and a Greek name in UTF-8; one study each, on four different dates."""
    latin1_study, ct_series, sc_series = generate_uid(), generate_uid(), generate_uid()
    latin1 = {"patient_id": "FS-L1", "patient_name": NAME, "charset": "ISO_IR 100"}
    objects = [
        dicom_objects.ct(study_uid=latin1_study, series_uid=ct_series, **latin1),
        dicom_objects.ct(study_uid=latin1_study, series_uid=ct_series, **latin1),
        dicom_objects.secondary_capture(study_uid=latin1_study, series_uid=sc_series, **latin1),
        dicom_objects.secondary_capture(
            patient_id="FS-U8", patient_name=NAME, charset="ISO_IR 192", study_date="20230610"
        ),
        dicom_objects.ct(patient_id="FS-NL", patient_name="NORDMANN^OLA", study_date="20220301"),
        dicom_objects.secondary_capture(
            patient_id="FS-GR", patient_name=GREEK, charset="ISO_IR 192", study_date="20210505"
        ),
    ]
    objects[1].InstanceNumber = 2
    callers = ["UNN_US"] * 4 + ["NLSH_CAM", "UNN_US"]
    studies: dict[str, Dataset] = {}
    series: dict[str, list[Dataset]] = {}
    instances: dict[str, list[Dataset]] = {}
    for ds, calling in zip(objects, callers, strict=True):
        assert store(node, ds, calling=calling) == status.SUCCESS
        studies.setdefault(ds.StudyInstanceUID, ds)
        if ds.SeriesInstanceUID not in instances:
            series.setdefault(ds.StudyInstanceUID, []).append(ds)
        instances.setdefault(ds.SeriesInstanceUID, []).append(ds)
    names = ["latin1", "utf8", "nlsh", "greek"]
    return Archive(dict(zip(names, studies.values(), strict=True)), series, instances)


def findscu(
    node, tmp_path: Path, model: str, *keys: str | bytes, calling: str = "UNN_WS"
) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    """Run findscu with `-k` keys (bytes for values in another character set) and read back
    the response identifiers it extracted (-X) into a fresh directory."""
    out = tmp_path / f"rsp-{generate_uid()[-12:]}"
    out.mkdir()
    args: list[str | bytes] = ["findscu", "-d", model, "-aet", calling, "-aec", node.ae_title]
    for key in keys:
        args += ["-k", key]
    args += ["-X", "-od", str(out), node.host, str(node.port)]
    proc = subprocess.run(
        args,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=TIMEOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
    )
    responses = [dcmread(path, force=True) for path in sorted(out.glob("rsp*.dcm"))]
    return proc, responses


def final_status(proc: subprocess.CompletedProcess[str]) -> int:
    """The status of the final C-FIND response, from findscu's debug log. findscu 3.6 exits 0
    whatever the status, and names 0x0124 only "Unknown Status": the logged code is the verdict.
    """
    text = output(proc)
    assert text.count("Received Final Find Response") == 1, text
    final = text.split("Received Final Find Response", 1)[1]
    match = re.search(r"DIMSE Status\s*: 0x([0-9a-fA-F]{4})", final)
    assert match, text
    return int(match.group(1), 16)


def keywords(ds: Dataset) -> set[str]:
    return {element.keyword for element in ds}


def assert_answers_only(responses: list[Dataset], requested: set[str]) -> None:
    """Every requested key is answered, and nothing else but what the node always adds."""
    allowed = requested | NODE_KEYS
    if "PatientID" in requested:
        allowed.add("IssuerOfPatientID")
    for ds in responses:
        assert requested <= keywords(ds), keywords(ds)
        assert keywords(ds) <= allowed, keywords(ds) - allowed
        assert ds.InstanceAvailability == "ONLINE"


def by_uid(responses: list[Dataset], keyword: str) -> dict[str, Dataset]:
    answers = {str(ds[keyword].value): ds for ds in responses}
    assert len(answers) == len(responses), f"duplicate {keyword} in the responses"
    return answers


def raw_value(ds: Dataset, keyword: str) -> bytes:
    """The bytes of an element as findscu wrote them, before any decoding (read afresh: any
    access to an element of `ds` has decoded it)."""
    raw = dcmread(ds.filename, force=True).get_item(tag_for_keyword(keyword))
    assert raw is not None, keyword
    return bytes(raw.value).rstrip(b" \x00")


# -- Study Root ------------------------------------------------------------------------------


def test_study_root_study_level_returns_requested_keys(node, archive, tmp_path):
    requested = {
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "StudyDate",
        "AccessionNumber",
        "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries",
        "ModalitiesInStudy",
    }
    proc, responses = findscu(node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", *sorted(requested))
    assert proc.returncode == 0, output(proc)
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, requested)
    answers = by_uid(responses, "StudyInstanceUID")
    assert set(answers) == {ds.StudyInstanceUID for ds in archive.studies.values()}
    for ds in responses:
        assert ds.QueryRetrieveLevel == "STUDY"
        assert ds.RetrieveAETitle == node.ae_title

    latin1 = answers[archive.studies["latin1"].StudyInstanceUID]
    assert latin1.PatientID == "FS-L1" and latin1.IssuerOfPatientID == "UNN"
    assert latin1.PatientName == NAME
    assert latin1.StudyDate == "20240115"
    assert int(latin1.NumberOfStudyRelatedInstances) == 3
    assert int(latin1.NumberOfStudyRelatedSeries) == 2
    assert sorted(latin1.ModalitiesInStudy) == ["CT", "OT"]

    nlsh = answers[archive.studies["nlsh"].StudyInstanceUID]
    assert nlsh.PatientID == "FS-NL" and nlsh.IssuerOfPatientID == "NLSH"
    assert nlsh.PatientName == "NORDMANN^OLA"
    assert int(nlsh.NumberOfStudyRelatedInstances) == 1
    assert nlsh.ModalitiesInStudy == "CT"
    # Nothing asked in another character set, nothing but ASCII in this answer: none named.
    assert "SpecificCharacterSet" not in nlsh


def test_study_level_date_ranges(node, archive, tmp_path):
    uids = {name: ds.StudyInstanceUID for name, ds in archive.studies.items()}
    for value, expected in [
        ("20230101-20231231", {"utf8"}),
        ("20220301-20230610", {"nlsh", "utf8"}),  # both ends are inclusive
        ("20230101-", {"latin1", "utf8"}),
        ("-20220228", {"greek"}),
        ("20220301", {"nlsh"}),
        ("20250101-", set()),
    ]:
        proc, responses = findscu(
            node,
            tmp_path,
            "-S",
            "QueryRetrieveLevel=STUDY",
            f"StudyDate={value}",
            "StudyInstanceUID",
        )
        assert final_status(proc) == status.SUCCESS, value
        assert_answers_only(responses, {"StudyDate", "StudyInstanceUID"})
        assert set(by_uid(responses, "StudyInstanceUID")) == {uids[n] for n in expected}, value


def test_study_level_modality_and_uid_list_matching(node, archive, tmp_path):
    uids = {name: ds.StudyInstanceUID for name, ds in archive.studies.items()}
    # ModalitiesInStudy matches a study when any of its series has the modality, and answers
    # all of the study's modalities.
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "ModalitiesInStudy=CT",
        "StudyInstanceUID",
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, {"ModalitiesInStudy", "StudyInstanceUID"})
    answers = by_uid(responses, "StudyInstanceUID")
    assert set(answers) == {uids["latin1"], uids["nlsh"]}
    assert sorted(answers[uids["latin1"]].ModalitiesInStudy) == ["CT", "OT"]
    assert answers[uids["nlsh"]].ModalitiesInStudy == "CT"

    # A list of UIDs matches any of them (PS3.4 C.2.2.2.2).
    wanted = f"{uids['utf8']}\\{uids['greek']}\\{generate_uid()}"
    proc, responses = findscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={wanted}", "PatientID"
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, {"StudyInstanceUID", "PatientID"})
    answers = by_uid(responses, "StudyInstanceUID")
    assert set(answers) == {uids["utf8"], uids["greek"]}
    assert {ds.PatientID for ds in responses} == {"FS-U8", "FS-GR"}


def test_series_level_within_a_study(node, archive, tmp_path):
    study = archive.studies["latin1"].StudyInstanceUID
    requested = {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    }
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study}",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, requested)
    answers = by_uid(responses, "SeriesInstanceUID")
    expected = {ds.SeriesInstanceUID: ds for ds in archive.series[study]}
    assert set(answers) == set(expected)
    for uid, ds in answers.items():
        assert ds.QueryRetrieveLevel == "SERIES"
        assert ds.StudyInstanceUID == study
        assert ds.Modality == expected[uid].Modality
        assert int(ds.NumberOfSeriesRelatedInstances) == len(archive.instances[uid])


def image_query(node, tmp_path, archive, *keys: str) -> tuple[list[Dataset], dict[str, Dataset]]:
    """An IMAGE level query in the Latin-1 study's CT series: the responses, and the stored
    instances by SOP Instance UID."""
    study = archive.studies["latin1"].StudyInstanceUID
    (series,) = (ds.SeriesInstanceUID for ds in archive.series[study] if ds.Modality == "CT")
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study}",
        f"SeriesInstanceUID={series}",
        "SOPInstanceUID",
        *keys,
    )
    assert proc.returncode == 0, output(proc)
    assert final_status(proc) == status.SUCCESS
    requested = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
    assert_answers_only(responses, requested | {k.split("=")[0] for k in keys})
    expected = {ds.SOPInstanceUID: ds for ds in archive.instances[series]}
    answers = by_uid(responses, "SOPInstanceUID")
    assert set(answers) == set(expected)
    for ds in responses:
        assert ds.QueryRetrieveLevel == "IMAGE"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (study, series)
    return responses, expected


def test_image_level_within_a_series(node, archive, tmp_path):
    responses, expected = image_query(node, tmp_path, archive, "SOPClassUID", "InstanceNumber")
    assert len(responses) == 2
    for ds in responses:
        assert ds.SOPClassUID == dicom_objects.CT_IMAGE
        assert int(ds.InstanceNumber) == expected[ds.SOPInstanceUID].InstanceNumber


def test_image_level_answers_keys_from_the_stored_header(node, archive, tmp_path):
    responses, expected = image_query(node, tmp_path, archive, "Rows", "Columns", "ImageType")
    for ds in responses:
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert list(ds.ImageType) == list(expected[ds.SOPInstanceUID].ImageType)


# -- Patient Root ----------------------------------------------------------------------------


def test_patient_root_patient_and_study_levels(node, archive, tmp_path):
    proc, responses = findscu(
        node,
        tmp_path,
        "-P",
        "QueryRetrieveLevel=PATIENT",
        "PatientID=FS-*",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedInstances",
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(
        responses,
        {
            "PatientID",
            "PatientName",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedInstances",
        },
    )
    patients = by_uid(responses, "PatientID")
    assert set(patients) == {"FS-L1", "FS-U8", "FS-NL", "FS-GR"}
    assert patients["FS-L1"].IssuerOfPatientID == "UNN"
    assert patients["FS-NL"].IssuerOfPatientID == "NLSH"
    assert int(patients["FS-L1"].NumberOfPatientRelatedStudies) == 1
    assert int(patients["FS-L1"].NumberOfPatientRelatedInstances) == 3
    assert patients["FS-GR"].PatientName == GREEK
    assert patients["FS-GR"].SpecificCharacterSet == "ISO_IR 192"

    proc, responses = findscu(
        node,
        tmp_path,
        "-P",
        "QueryRetrieveLevel=STUDY",
        "PatientID=FS-NL",
        "StudyInstanceUID",
        "StudyDate",
        "ModalitiesInStudy",
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(
        responses, {"PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy"}
    )
    (study,) = responses
    assert study.StudyInstanceUID == archive.studies["nlsh"].StudyInstanceUID
    assert study.StudyDate == "20220301" and study.ModalitiesInStudy == "CT"


# -- character sets --------------------------------------------------------------------------


def test_latin1_name_query_finds_latin1_and_utf8_patients(node, archive, tmp_path):
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 100",
        b"PatientName=\xd8DEG\xc5RD*",
        "PatientID",
        "StudyInstanceUID",
    )
    assert final_status(proc) == status.SUCCESS, output(proc)
    assert_answers_only(responses, {"PatientName", "PatientID", "StudyInstanceUID"})
    answers = by_uid(responses, "PatientID")
    assert set(answers) == {"FS-L1", "FS-U8"}
    for ds in answers.values():
        charset = ds.SpecificCharacterSet
        assert charset in ("ISO_IR 100", "ISO_IR 192"), charset
        assert raw_value(ds, "PatientName") == NAME.encode(python_encoding[charset])
        assert ds.PatientName == NAME
    # Both names fit the character set the query was in: both are answered in it.
    assert {ds.SpecificCharacterSet for ds in answers.values()} == {"ISO_IR 100"}


def test_answer_outside_the_query_character_set_is_utf8(node, archive, tmp_path):
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 100",
        "PatientName",
        "PatientID=FS-*",
        "StudyInstanceUID",
    )
    assert final_status(proc) == status.SUCCESS, output(proc)
    answers = by_uid(responses, "PatientID")
    assert set(answers) == {"FS-L1", "FS-U8", "FS-NL", "FS-GR"}
    expected = {"FS-L1": NAME, "FS-U8": NAME, "FS-NL": "NORDMANN^OLA", "FS-GR": GREEK}
    for pid, ds in answers.items():
        charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
        assert raw_value(ds, "PatientName") == expected[pid].encode(python_encoding[charset])
        assert ds.PatientName == expected[pid]
    # Greek does not fit Latin-1: that answer says UTF-8; the others stay in the query's set.
    assert answers["FS-GR"].SpecificCharacterSet == "ISO_IR 192"
    assert answers["FS-L1"].SpecificCharacterSet == "ISO_IR 100"


# -- refusals --------------------------------------------------------------------------------


def test_ae_without_find_right_is_refused(node, archive, tmp_path):
    # NLSH_CAM may only store: the association opens, the C-FIND answers 0x0124 and no match.
    proc, responses = findscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", calling="NLSH_CAM"
    )
    assert "Association Accepted" in output(proc)
    assert final_status(proc) == status.NOT_AUTHORISED
    assert responses == []
    assert "Received Find Response" not in output(proc)  # no pending response before it


def test_malformed_date_fails_and_node_keeps_serving(node, archive, tmp_path):
    proc, responses = findscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "StudyDate=2020-13-45",
        "StudyInstanceUID",
    )
    assert final_status(proc) == status.UNABLE_TO_PROCESS
    assert responses == []
    # The status detail names the offending element and says why.
    assert re.search(r"\(0000,0901\) AT \(0008,0020\)", output(proc)), output(proc)
    assert re.search(r"\(0000,0902\) LO \[StudyDate", output(proc)), output(proc)

    proc, responses = findscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240115", "StudyInstanceUID"
    )
    assert proc.returncode == 0, output(proc)
    assert final_status(proc) == status.SUCCESS
    assert [ds.StudyInstanceUID for ds in responses] == [
        archive.studies["latin1"].StudyInstanceUID
    ]


# -- relational queries (PS3.4 C.4.1.2.2), as findscu sends them without negotiating -------------


def test_series_level_without_study_uid_is_relational(node, archive, tmp_path):
    """A Study Root SERIES query on Modality alone: every CT series, each answer naming its
    study (the unique key of the level above, C.4.1.3.1.1), though not requested."""
    proc, responses = findscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=SERIES", "Modality=CT", "SeriesInstanceUID"
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, {"Modality", "SeriesInstanceUID", "StudyInstanceUID"})
    expected = {
        ds.SeriesInstanceUID: ds.StudyInstanceUID
        for series in archive.series.values()
        for ds in series
        if ds.Modality == "CT"
    }
    assert expected
    answers = by_uid(responses, "SeriesInstanceUID")
    assert {uid: ds.StudyInstanceUID for uid, ds in answers.items()} == expected


def test_patient_root_study_level_without_patient_id(node, archive, tmp_path):
    """DCMTK's Patient Root STUDY query with no PatientID: answered, each study with its
    patient's PatientID and IssuerOfPatientID."""
    study = archive.studies["latin1"]
    proc, responses = findscu(
        node,
        tmp_path,
        "-P",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study.StudyInstanceUID}",
    )
    assert final_status(proc) == status.SUCCESS
    assert_answers_only(responses, {"StudyInstanceUID", "PatientID"})
    assert [(ds.PatientID, ds.IssuerOfPatientID) for ds in responses] == [("FS-L1", "UNN")]
