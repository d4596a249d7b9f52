"""C-FIND SCP over real associations on SQLite and PostgreSQL: levels, keys, scope, rights,
character sets, cancel, the result cap and bad identifiers."""

from __future__ import annotations

import logging
import unicodedata

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind as PATIENT_ROOT,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT,
)

from archive_node.dicom import status
from bench.corpus import populate
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, find, find_results, store
from tests.helpers.identifiers import identifier
from tests.helpers.serving import node_with

FIXED_KEYS = {"QueryRetrieveLevel", "RetrieveAETitle", "InstanceAvailability"}


def keywords(answer: Dataset) -> set[str]:
    return {element.keyword for element in answer} - {"SpecificCharacterSet"}


# -- a small region: two hospitals, one PatientID in both issuer domains -----------------------


@pytest.fixture
def region(node):
    """Studies pushed over C-STORE: UNN's ultrasound and CT of ØDEGÅRD (Latin-1), NLSH's photo
    of a different patient with the same PatientID in NLSH's domain, and a UTF-8 name."""
    reg = node.service.registry
    reg.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="find", scope="hospital")
    reg.add_ae("UNN_LOCAL", "UNN", host="127.0.0.1", allow="find", scope="hospital")
    us_study, ct_study, photo_study, utf8_study = (generate_uid() for _ in range(4))
    series = generate_uid()
    pushes = [
        (
            "UNN_US",
            dicom_objects.us_multiframe,
            us_study,
            "P1",
            "ØDEGÅRD^ÅSE",
            "ISO_IR 100",
            series,
        ),
        (
            "UNN_US",
            dicom_objects.us_multiframe,
            us_study,
            "P1",
            "ØDEGÅRD^ÅSE",
            "ISO_IR 100",
            series,
        ),
        ("UNN_US", dicom_objects.ct, ct_study, "P1", "ØDEGÅRD^ÅSE", "ISO_IR 100", None),
        ("UNN_US", dicom_objects.ct, ct_study, "P1", "ØDEGÅRD^ÅSE", "ISO_IR 100", None),
        ("NLSH_CAM", dicom_objects.vl_photo_jpeg, photo_study, "P1", "HANSEN^OLA", None, None),
        (
            "UNN_US",
            dicom_objects.secondary_capture,
            utf8_study,
            "P2",
            "ÆRØ^BJØRN",
            "ISO_IR 192",
            None,
        ),
    ]
    dates = {us_study: "20230105", ct_study: "20240110", photo_study: "20240301"}
    for calling, make, study, pid, name, charset, series_uid in pushes:
        ds = make(
            study_uid=study,
            series_uid=series_uid,
            patient_id=pid,
            patient_name=name,
            charset=charset,
            study_date=dates.get(study, "20240401"),
        )
        assert store(node, ds, calling) == status.SUCCESS
    return {"us": us_study, "ct": ct_study, "photo": photo_study, "utf8": utf8_study}


def study_uids(matches) -> set[str]:
    return {m.StudyInstanceUID for m in matches}


def test_study_level_answers_requested_keys_and_computed_counts(node, region):
    query = identifier(
        "STUDY",
        PatientID="P1",
        IssuerOfPatientID="UNN",
        StudyDate="",
        PatientName="",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        ModalitiesInStudy="",
        SOPClassesInStudy="",
    )
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    by_uid = {m.StudyInstanceUID: m for m in matches}
    assert set(by_uid) == {region["us"], region["ct"]}
    us = by_uid[region["us"]]
    assert keywords(us) == FIXED_KEYS | {
        "PatientID",
        "IssuerOfPatientID",
        "StudyDate",
        "PatientName",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "StudyInstanceUID",
    }
    assert us.NumberOfStudyRelatedSeries == 1
    assert us.NumberOfStudyRelatedInstances == 2
    assert us.ModalitiesInStudy == "US"
    assert us.SOPClassesInStudy == dicom_objects.US_MULTIFRAME
    assert us.StudyDate == "20230105"
    assert us.QueryRetrieveLevel == "STUDY"
    assert us.RetrieveAETitle == node.ae_title
    assert us.InstanceAvailability == "ONLINE"
    assert str(us.PatientName) == "ØDEGÅRD^ÅSE"
    assert by_uid[region["ct"]].NumberOfStudyRelatedSeries == 2  # a series per CT instance


def test_never_answers_keys_it_was_not_asked(node, region):
    final, matches = find(node, identifier("STUDY", StudyInstanceUID=region["us"]))
    assert final.Status == status.SUCCESS
    assert [keywords(m) for m in matches] == [FIXED_KEYS | {"StudyInstanceUID"}]


def test_a_study_of_many_instances_is_one_study_response(node, registry):
    study = generate_uid()
    rows = _index_instances(node.service, study, count=300)
    assert rows == 300
    final, matches = find(
        node, identifier("STUDY", StudyInstanceUID=study, NumberOfStudyRelatedInstances="")
    )
    assert final.Status == status.SUCCESS
    assert len(matches) == 1
    assert matches[0].NumberOfStudyRelatedInstances == 300


def _index_instances(service, study: str, count: int) -> int:
    series = generate_uid()
    for number in range(count):
        header = dicom_objects.instance_header(
            study_uid=study,
            series_uid=series,
            patient_id="MANY",
            study_date="20200101",
            instance_number=number,
        )
        dicom_objects.index_row(service, header)
    return count


# -- patients are (PatientID, IssuerOfPatientID) -----------------------------------------------


def test_issuer_restricts_to_one_identifier_domain(node, region):
    final, matches = find(node, identifier("STUDY", PatientID="P1", IssuerOfPatientID="NLSH"))
    assert final.Status == status.SUCCESS
    assert study_uids(matches) == {region["photo"]}
    assert {m.IssuerOfPatientID for m in matches} == {"NLSH"}


def test_without_issuer_every_domain_matches_each_with_its_issuer(node, region):
    query = identifier("PATIENT", PatientID="P1", PatientName="", NumberOfPatientRelatedStudies="")
    final, matches = find(node, query, PATIENT_ROOT)
    assert final.Status == status.SUCCESS
    answers = {
        (m.IssuerOfPatientID, str(m.PatientName), m.NumberOfPatientRelatedStudies) for m in matches
    }
    assert answers == {("UNN", "ØDEGÅRD^ÅSE", 2), ("NLSH", "HANSEN^OLA", 1)}


def test_patient_level_counts(node, region):
    query = identifier(
        "PATIENT",
        PatientID="P1",
        IssuerOfPatientID="UNN",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
    )
    final, matches = find(node, query, PATIENT_ROOT)
    assert final.Status == status.SUCCESS
    (patient,) = matches
    assert patient.NumberOfPatientRelatedStudies == 2
    assert patient.NumberOfPatientRelatedSeries == 3
    assert patient.NumberOfPatientRelatedInstances == 4


# -- levels below STUDY ------------------------------------------------------------------------


def test_series_level_in_patient_root(node, region):
    query = identifier(
        "SERIES",
        PatientID="P1",
        StudyInstanceUID=region["ct"],
        SeriesInstanceUID="",
        Modality="",
        NumberOfSeriesRelatedInstances="",
    )
    final, matches = find(node, query, PATIENT_ROOT)
    assert final.Status == status.SUCCESS
    assert len(matches) == 2
    assert {m.Modality for m in matches} == {"CT"}
    assert {m.NumberOfSeriesRelatedInstances for m in matches} == {1}
    assert all(m.StudyInstanceUID == region["ct"] for m in matches)


def test_image_level_reads_keys_the_index_lacks_from_the_stored_header(node, region):
    final, series = find(
        node, identifier("SERIES", StudyInstanceUID=region["us"], SeriesInstanceUID="")
    )
    query = identifier(
        "IMAGE",
        StudyInstanceUID=region["us"],
        SeriesInstanceUID=series[0].SeriesInstanceUID,
        SOPInstanceUID="",
        SOPClassUID="",
        NumberOfFrames="",
        Rows="",
        FrameTime="",
        ContentDate="",
    )
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert len(matches) == 2
    for image in matches:
        assert image.SOPClassUID == dicom_objects.US_MULTIFRAME
        assert image.NumberOfFrames == 4
        assert image.Rows == 32  # from the file's header
        assert image.FrameTime == 40
        assert "ContentDate" in image and image.ContentDate == ""  # not in the file: empty


# -- character sets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "pattern"),
    [("ISO_IR 100", "ødegård*"), ("ISO_IR 192", "ØDEGÅRD^Å?E"), (None, "*Å*")],
    ids=["latin1-query", "utf8-query", "no-charset"],
)
def test_latin1_name_found_by_any_character_set(node, region, charset, pattern):
    query = identifier(
        "STUDY", SpecificCharacterSet=charset, PatientName=pattern, IssuerOfPatientID="UNN"
    )
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert study_uids(matches) == {region["us"], region["ct"]}
    for answer in matches:
        assert str(answer.PatientName) == "ØDEGÅRD^ÅSE"
        expected = charset if charset == "ISO_IR 100" else "ISO_IR 192"
        assert answer.SpecificCharacterSet == expected


def test_utf8_name_found_by_latin1_query(node, region):
    query = identifier("STUDY", SpecificCharacterSet="ISO_IR 100", PatientName="ærø^bjørn")
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert study_uids(matches) == {region["utf8"]}
    assert matches[0].SpecificCharacterSet == "ISO_IR 100"  # Latin-1 carries Æ and Ø


def test_ascii_answer_to_a_query_without_character_set_has_none(node, region):
    final, matches = find(node, identifier("STUDY", PatientName="HANSEN*"))
    assert final.Status == status.SUCCESS
    assert "SpecificCharacterSet" not in matches[0]


# -- matching rules over the wire (the property test covers them in breadth) -------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"StudyDate": "20240101-"}, {"ct", "photo", "utf8"}),
        ({"StudyDate": "-20231231"}, {"us"}),
        ({"StudyDate": "20240110"}, {"ct"}),
        ({"StudyDate": "20240101-20240331", "StudyTime": "1000-1030"}, {"ct", "photo"}),
        ({"StudyDate": "20240110-20240301", "StudyTime": "1100-1030"}, {"photo"}),
        ({"ModalitiesInStudy": "US\\XC"}, {"us", "photo"}),
        ({"ModalitiesInStudy": "C?"}, {"ct"}),
        ({"PatientName": "hansen^ola"}, {"photo"}),
        ({"PatientName": "HANSEN"}, set()),
        ({"PatientName": "*ola"}, {"photo"}),
        ({"AccessionNumber": "ACC%"}, set()),
        ({"AccessionNumber": "ACC_"}, set()),
        ({"AccessionNumber": "ACC?"}, {"us", "ct", "photo", "utf8"}),
        ({"StudyDescription": "synthetic*"}, set()),
        ({"StudyDescription": "Synthetic*"}, {"us", "ct", "photo", "utf8"}),
        (
            {"PatientSex": "O", "PatientBirthDate": "19600101-19800101"},
            {"us", "ct", "photo", "utf8"},
        ),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_matching_rules(node, region, keys, expected):
    final, matches = find(node, identifier("STUDY", **keys))
    assert final.Status == status.SUCCESS
    assert study_uids(matches) == {region[name] for name in expected}


def test_list_of_uids(node, region):
    uids = "\\".join([region["us"], region["photo"], "1.2.3.4"])
    final, matches = find(node, identifier("STUDY", StudyInstanceUID=uids))
    assert final.Status == status.SUCCESS
    assert study_uids(matches) == {region["us"], region["photo"]}


# -- rights and scope --------------------------------------------------------------------------


def test_ae_without_find_right_is_refused(node, region):
    final, matches = find(node, identifier("STUDY", PatientID="P1"), calling="NLSH_CAM")
    assert final.Status == status.NOT_AUTHORISED
    assert matches == []


def test_granting_find_takes_effect_on_the_next_association(node, region):
    node.service.registry.update_ae("NLSH_CAM", allow="store,find")
    final, matches = find(node, identifier("STUDY", PatientID="P1"), calling="NLSH_CAM")
    assert final.Status == status.SUCCESS
    assert len(matches) == 3


@pytest.mark.parametrize(
    ("level", "model", "extra"),
    [
        ("PATIENT", PATIENT_ROOT, {"PatientID": "P1"}),
        ("STUDY", STUDY_ROOT, {"PatientID": "P1"}),
        ("SERIES", STUDY_ROOT, {"StudyInstanceUID": "{photo}"}),
        ("SERIES", STUDY_ROOT, {"StudyInstanceUID": "{us}"}),
    ],
)
def test_hospital_scope_hides_other_hospitals_at_every_level(node, region, level, model, extra):
    keys = {k: v.format(**region) for k, v in extra.items()}
    query = identifier(level, **keys)
    _, nlsh = find(node, query, model, calling="NLSH_WS")
    _, everyone = find(node, query, model, calling="UNN_WS")
    if level == "PATIENT":
        assert [m.IssuerOfPatientID for m in nlsh] == ["NLSH"]
        assert len(everyone) == 2
    elif level == "STUDY":
        assert study_uids(nlsh) == {region["photo"]}
        assert study_uids(everyone) == {region["us"], region["ct"], region["photo"]}
    else:
        seen = keys["StudyInstanceUID"] == region["photo"]
        assert len(nlsh) == (1 if seen else 0)
        assert len(everyone) == 1


def test_hospital_scope_counts_only_what_it_sees(node, region):
    # Give NLSH a study of UNN's patient P1/UNN: NLSH's counts of that patient are its own.
    ds = dicom_objects.ct(
        patient_id="P1", issuer="UNN", patient_name="ØDEGÅRD^ÅSE", charset="ISO_IR 100"
    )
    assert store(node, ds, "NLSH_CAM") == status.SUCCESS
    query = identifier(
        "PATIENT",
        PatientID="P1",
        IssuerOfPatientID="UNN",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedInstances="",
    )
    _, (local,) = find(node, query, PATIENT_ROOT, calling="NLSH_WS")
    _, (region_wide,) = find(node, query, PATIENT_ROOT, calling="UNN_WS")
    _, (unn_only,) = find(node, query, PATIENT_ROOT, calling="UNN_LOCAL")
    assert (local.NumberOfPatientRelatedStudies, local.NumberOfPatientRelatedInstances) == (1, 1)
    assert (
        region_wide.NumberOfPatientRelatedStudies,
        region_wide.NumberOfPatientRelatedInstances,
    ) == (3, 5)
    assert (unn_only.NumberOfPatientRelatedStudies, unn_only.NumberOfPatientRelatedInstances) == (
        2,
        4,
    )


# -- bad identifiers: a failure status, the association goes on ----------------------------------


@pytest.mark.parametrize(
    ("model", "keys", "expected", "offending"),
    [
        (STUDY_ROOT, {}, status.IDENTIFIER_MISMATCH, "QueryRetrieveLevel"),
        (STUDY_ROOT, {"QueryRetrieveLevel": "PATIENT"}, status.IDENTIFIER_MISMATCH, None),
        (STUDY_ROOT, {"QueryRetrieveLevel": "FRAME"}, status.IDENTIFIER_MISMATCH, None),
        # without a unique key above the level a query is relational, answered
        # (tests/node/test_relational_queries.py); a UID wildcard is still malformed
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2.*"},
            status.UNABLE_TO_PROCESS,
            "StudyInstanceUID",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "STUDY", "StudyDate": "2020-13-45"},
            status.UNABLE_TO_PROCESS,
            "StudyDate",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "STUDY", "StudyDate": "abc-def"},
            status.UNABLE_TO_PROCESS,
            "StudyDate",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.abc"},
            status.UNABLE_TO_PROCESS,
            "StudyInstanceUID",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "STUDY", "StudyTime": "2561"},
            status.UNABLE_TO_PROCESS,
            "StudyTime",
        ),
    ],
)
def test_bad_identifier_fails_and_association_stays_usable(
    node, region, model, keys, expected, offending
):
    query = identifier(None, **keys, PatientName="")
    assoc = associate(node, "UNN_WS", [STUDY_ROOT, PATIENT_ROOT])
    try:
        final, matches = find_results(assoc.send_c_find(query, model))
        assert final.Status == expected
        assert matches == []
        assert final.ErrorComment
        if offending:
            from pydicom.datadict import tag_for_keyword

            assert final.OffendingElement == tag_for_keyword(offending)
        final, matches = find_results(
            assoc.send_c_find(identifier("STUDY", StudyInstanceUID=region["us"]), STUDY_ROOT)
        )
        assert final.Status == status.SUCCESS and len(matches) == 1
    finally:
        assoc.release()


def test_wrong_vr_is_refused(node, region):
    query = identifier("STUDY")
    query.add_new(0x00080020, "LO", "20240110")  # StudyDate is DA
    final, matches = find(node, query)
    assert final.Status == status.UNABLE_TO_PROCESS
    assert "StudyDate" in final.ErrorComment
    assert matches == []


def test_non_integer_series_number_is_refused(node, region):
    query = identifier("SERIES", StudyInstanceUID=region["us"])
    query.add_new(0x00200011, "IS", "1")
    query[0x00200011]._value = "abc"
    final, _ = find(node, query)
    assert final.Status == status.UNABLE_TO_PROCESS


# -- result cap, cancel, index failure, logs ---------------------------------------------------


def test_more_matches_than_the_cap_end_in_a_clear_failure(tmp_path, index_url, registry, caplog):
    with node_with(tmp_path, index_url, query={"max_results": 2}) as capped:
        for _ in range(3):
            assert (
                store(capped, dicom_objects.secondary_capture(patient_id="CAP")) == status.SUCCESS
            )
        with caplog.at_level(logging.WARNING, logger="archive_node"):
            final, matches = find(capped, identifier("STUDY", PatientID="CAP"))
        assert len(matches) == 2
        assert final.Status == status.OUT_OF_RESOURCES
        assert "more than 2 matches" in final.ErrorComment
        assert "more than 2 matches" in caplog.text
        final, matches = find(capped, identifier("STUDY", PatientID="CAP", StudyDate="-20240115"))
        assert len(matches) == 2 and final.Status == status.OUT_OF_RESOURCES


def test_cancel_stops_the_query_between_responses(node, registry):
    many = 1000  # far more than can be answered in the time a C-CANCEL takes to arrive
    populate(node.service.index, many)  # the benchmark's corpus: bulk rows, no files
    everything = {"StudyDate": "20150101-20251231"}  # the corpus's span of dates
    assoc = associate(node, "UNN_WS", [STUDY_ROOT])
    try:
        context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == STUDY_ROOT)
        query = identifier("STUDY", **everything, NumberOfStudyRelatedInstances="")
        responses = assoc.send_c_find(query, STUDY_ROOT, msg_id=7)
        first_status, _ = next(responses)
        assert first_status.Status == status.PENDING
        assoc.send_c_cancel(7, context.context_id)
        final, matches = find_results(responses)
        assert final.Status == status.CANCELLED
        assert len(matches) + 1 < many
        final, matches = find_results(
            assoc.send_c_find(identifier("STUDY", **everything), STUDY_ROOT)
        )
        assert final.Status == status.SUCCESS and len(matches) == many
    finally:
        assoc.release()


def test_index_failure_is_a_failure_status_and_the_node_keeps_serving(node, region, index_url):
    with node.service.index.session(write=True):
        node.service.index.db.execute_sql('ALTER TABLE "study" RENAME TO "study_away"')
    try:
        final, matches = find(node, identifier("STUDY", PatientID="P1"))
        assert final.Status == status.QUERY_FAILED
        assert matches == []
    finally:
        with node.service.index.session(write=True):
            node.service.index.db.execute_sql('ALTER TABLE "study_away" RENAME TO "study"')
    final, matches = find(node, identifier("STUDY", PatientID="P1"))
    assert final.Status == status.SUCCESS and len(matches) == 3


def test_no_patient_data_in_info_logs(node, region, caplog):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        find(node, identifier("STUDY", PatientName="ØDEG*", PatientID="", StudyDate="2020-13-45"))
        find(node, identifier("STUDY", PatientName="ØDEG*", PatientID="P1"))
    assert "C-FIND STUDY level from UNN_WS" in caplog.text
    for secret in ("ØDEG", "ODEG", "P1", "HANSEN"):
        assert secret not in caplog.text


# -- found in review: scope per instance, character sets, file values, hostile values ----------


@pytest.fixture
def shared_study(node):
    """One study that UNN started (CT) and NLSH added a series to (US), same patient."""
    reg = node.service.registry
    reg.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="find", scope="hospital")
    reg.add_ae("UNN_LOCAL", "UNN", host="127.0.0.1", allow="find", scope="hospital")
    study = generate_uid()
    unn = dicom_objects.ct(study_uid=study, patient_id="P9", issuer="FNR")
    nlsh = dicom_objects.us_multiframe(study_uid=study, patient_id="P9", issuer="FNR")
    assert store(node, unn, "UNN_US") == status.SUCCESS
    assert store(node, nlsh, "NLSH_CAM") == status.SUCCESS
    return study, unn, nlsh


def test_hospital_scope_sees_only_its_own_instances_of_a_shared_study(node, shared_study):
    study, unn, nlsh = shared_study
    counts = {
        "NumberOfStudyRelatedSeries": "",
        "NumberOfStudyRelatedInstances": "",
        "ModalitiesInStudy": "",
        "NumberOfPatientRelatedInstances": "",
    }
    expected = {
        "UNN_LOCAL": (1, 1, "CT", 1, unn),
        "NLSH_WS": (1, 1, "US", 1, nlsh),
        "UNN_WS": (2, 2, ["CT", "US"], 2, None),
    }
    for calling, (n_series, n_instances, modalities, n_patient, own) in expected.items():
        _, (answer,) = find(
            node, identifier("STUDY", StudyInstanceUID=study, **counts), calling=calling
        )
        assert answer.NumberOfStudyRelatedSeries == n_series, calling
        assert answer.NumberOfStudyRelatedInstances == n_instances, calling
        assert answer.ModalitiesInStudy == modalities, calling
        assert answer.NumberOfPatientRelatedInstances == n_patient, calling
        _, series = find(
            node,
            identifier("SERIES", StudyInstanceUID=study, SeriesInstanceUID=""),
            calling=calling,
        )
        if own is not None:
            assert [s.SeriesInstanceUID for s in series] == [own.SeriesInstanceUID], calling
            query = identifier(
                "IMAGE", StudyInstanceUID=study, SeriesInstanceUID=own.SeriesInstanceUID, Rows=""
            )
            _, (image,) = find(node, query, calling=calling)
            assert image.SOPInstanceUID == own.SOPInstanceUID
            other = nlsh if own is unn else unn
            query = identifier(
                "IMAGE", StudyInstanceUID=study, SeriesInstanceUID=other.SeriesInstanceUID
            )
            assert find(node, query, calling=calling)[1] == []
    # ModalitiesInStudy matches on the visible series only
    _, unseen = find(
        node, identifier("STUDY", ModalitiesInStudy="US", PatientID="P9"), calling="UNN_LOCAL"
    )
    assert unseen == []
    _, seen = find(
        node, identifier("STUDY", ModalitiesInStudy="US", PatientID="P9"), calling="NLSH_WS"
    )
    assert study_uids(seen) == {study}


@pytest.mark.parametrize("charset", ["ISO_IR 6", "ISO 2022 IR 6"])
def test_an_ascii_query_gets_non_ascii_answers_in_utf8(node, region, charset):
    query = identifier(
        "STUDY", SpecificCharacterSet=charset, StudyInstanceUID=region["us"], PatientName=""
    )
    final, (answer,) = find(node, query)
    assert final.Status == status.SUCCESS
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE"


def test_image_level_answers_no_bulk_data_and_only_the_requested_item_keys(node, registry):
    pdf = dicom_objects.encapsulated_pdf()
    pdf.EncapsulatedDocument = b"%PDF-1.4\n" + b"x" * 200_000
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D1100", "SRT", "Head"
    pdf.AnatomicRegionSequence = [code]
    assert store(node, pdf) == status.SUCCESS
    wanted = Dataset()
    wanted.CodeMeaning = ""
    query = identifier(
        "IMAGE",
        StudyInstanceUID=pdf.StudyInstanceUID,
        SeriesInstanceUID=pdf.SeriesInstanceUID,
        EncapsulatedDocument=b"",
        MIMETypeOfEncapsulatedDocument="",
        AnatomicRegionSequence=[wanted],
    )
    final, (answer,) = find(node, query)
    assert final.Status == status.SUCCESS
    assert answer.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert not answer.EncapsulatedDocument  # bulk data is not an attribute to answer with
    (item,) = answer.AnatomicRegionSequence
    assert [e.keyword for e in item] == ["CodeMeaning"] and item.CodeMeaning == "Head"
    query.AnatomicRegionSequence = []  # an empty sequence asks for the items whole
    _, (answer,) = find(node, query)
    assert answer.AnatomicRegionSequence[0].CodeValue == "T-D1100"


@pytest.mark.parametrize(
    "keys",
    [
        {"PatientID": "A\x00B"},
        {"AccessionNumber": "A\x07"},
        {"StudyDescription": "x" * 65},
        {"PatientName": "A" * 60_000 + "*"},
    ],
    ids=["nul", "bell", "LO-too-long", "huge-pattern"],
)
def test_control_characters_and_oversized_values_are_refused(node, region, keys):
    assoc = associate(node, "UNN_WS", [STUDY_ROOT])
    try:
        final, matches = find_results(assoc.send_c_find(identifier("STUDY", **keys), STUDY_ROOT))
        assert final.Status == status.UNABLE_TO_PROCESS and matches == []
        final, matches = find_results(
            assoc.send_c_find(identifier("STUDY", PatientID="P1"), STUDY_ROOT)
        )
        assert final.Status == status.SUCCESS and len(matches) == 3
    finally:
        assoc.release()


def test_name_matching_edges(node, registry):
    names = {"GROß^KARL": None, "HANSEN": None, "ØDEGÅRD^ÅSE": None}
    for number, name in enumerate(names):
        ds = dicom_objects.secondary_capture(
            patient_id=f"EDGE{number}", patient_name=name, charset="ISO_IR 192"
        )
        names[name] = ds.StudyInstanceUID
        assert store(node, ds) == status.SUCCESS
    cases = {
        "GRO?^KARL": "GROß^KARL",  # ß stays one letter
        "HANSEN^*": "HANSEN",  # a stored name without given name
        "HANSEN^": "HANSEN",
        unicodedata.normalize("NFD", "ødegård^åse"): "ØDEGÅRD^ÅSE",  # decomposed query
    }
    for pattern, name in cases.items():
        query = identifier("STUDY", SpecificCharacterSet="ISO_IR 192", PatientName=pattern)
        final, matches = find(node, query)
        assert final.Status == status.SUCCESS
        assert study_uids(matches) == {names[name]}, pattern


def test_acr_nema_birth_dates_match_as_dates(node, registry):
    ds = dicom_objects.secondary_capture(patient_id="OLD")
    ds.PatientBirthDate = "1970.01.02"
    assert store(node, ds) == status.SUCCESS
    for value in ("19700102", "19700101-19700103", "-19700102"):
        final, matches = find(node, identifier("STUDY", PatientBirthDate=value))
        assert final.Status == status.SUCCESS
        assert study_uids(matches) == {ds.StudyInstanceUID}, value
        assert matches[0].PatientBirthDate == "1970.01.02"  # answered as stored


def test_error_comment_never_carries_a_backslash():
    from archive_node.net.association import response_status

    answer = response_status(status.UNABLE_TO_PROCESS, "StudyTime '10\\11' is wrong", "StudyTime")
    assert answer.ErrorComment == "StudyTime '10/11' is wrong"
    assert answer.OffendingElement == 0x00080030


# -- person names by component group (PS3.5 6.2.1, PS3.4 C.2.2.2.1) ---------------------------

YAMADA = "Yamada^Tarou=山田^太郎=やまだ^たろう"
TANAKA = "Tanaka^Hanako=田中^花子=たなか^はなこ"


@pytest.fixture
def japanese(node):
    """YAMADA stored in ISO 2022 IR 87 (JIS X 0208 by escape sequences), TANAKA in UTF-8,
    and a one-group Latin name."""
    stored = {
        "yamada": ("P-JP1", YAMADA, ["", "ISO 2022 IR 87"]),
        "tanaka": ("P-JP2", TANAKA, "ISO_IR 192"),
        "hansen": ("P-NO", "HANSEN^OLA", None),
    }
    for patient_id, name, charset in stored.values():
        ds = dicom_objects.ct(patient_id=patient_id, patient_name=name, charset=charset)
        assert store(node, ds, "UNN_US") == status.SUCCESS
    return {key: value[0] for key, value in stored.items()}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("*山田*", {"yamada"}, id="ideographic-by-wildcard"),
        pytest.param("=山田*", {"yamada"}, id="ideographic-group-only"),
        pytest.param("=山田^太郎", {"yamada"}, id="ideographic-exact"),
        pytest.param("山田^太郎", {"yamada"}, id="one-group-value-finds-any-group"),
        pytest.param("==たなか^*", {"tanaka"}, id="phonetic-group-trailing-star"),
        pytest.param("Yamada^Tarou", {"yamada"}, id="alphabetic-exact"),
        pytest.param("YAMADA*", {"yamada"}, id="alphabetic-wildcard"),
        pytest.param("Yamada^Tarou=山田^太郎", {"yamada"}, id="two-groups"),
        pytest.param("Yamada^Tarou=田中^花子", set(), id="groups-of-two-people"),
        pytest.param("*田*", {"yamada", "tanaka"}, id="either-group"),
        pytest.param("=*郎", {"yamada"}, id="ideographic-ending"),
        pytest.param("*=田中*", {"tanaka"}, id="star-alphabetic-is-any"),
        pytest.param("HANSEN^OLA", {"hansen"}, id="one-group-name"),
        pytest.param("HANSEN^OLA=*", {"hansen"}, id="one-group-name-alphabetic-explicit"),
        pytest.param("=HANSEN*", set(), id="latin-name-has-no-ideographic-group"),
        pytest.param("*ou", {"yamada"}, id="alphabetic-group-end"),
        pytest.param("y*う", set(), id="no-group-starts-y-ends-u"),
    ],
)
def test_person_name_matches_every_group_a_query_gives(node, japanese, value, expected):
    query = identifier("STUDY", SpecificCharacterSet="ISO_IR 192", PatientName=value, PatientID="")
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    by_id = {m.PatientID: m for m in matches}
    assert set(by_id) == {japanese[name] for name in expected}
    if "yamada" in expected:
        assert str(by_id["P-JP1"].PatientName) == YAMADA  # answered whole, every group


def test_person_name_groups_in_a_jis_query(node, japanese):
    """The query itself in ISO 2022 IR 87, as a Japanese workstation sends it."""
    query = identifier(
        "STUDY", SpecificCharacterSet=["", "ISO 2022 IR 87"], PatientName="=山田*", PatientID=""
    )
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert [m.PatientID for m in matches] == ["P-JP1"]


def test_schema_5_recomputes_the_name_keys_of_names_with_groups(node, japanese):
    """An index of schema 4 kept only the alphabetic group in name_key; the upgrade recomputes
    the keys of names with '=' (and makes sure of the series.modality index)."""
    from archive_node.index import SCHEMA_VERSION
    from archive_node.index.tables import Patient, SchemaInfo, Study

    index = node.service.index
    with index.session(write=True):
        Patient.update(name_key="yamada^tarou").where(Patient.patient_id == "P-JP1").execute()
        Study.update(
            referring_physician="Sato^Jiro=佐藤^次郎", referring_key="sato^jiro"
        ).execute()
        index.db.execute_sql('DROP INDEX "series_modality"')
        SchemaInfo.update(value="4").where(SchemaInfo.key == "version").execute()
    assert index.init_schema() == (4, SCHEMA_VERSION)
    assert index.init_schema() == (SCHEMA_VERSION, SCHEMA_VERSION)
    with index.session():
        keys = dict(Patient.select(Patient.patient_id, Patient.name_key).tuples())
        assert keys == {
            "P-JP1": "yamada^tarou=山田^太郎=やまだ^たろう",
            "P-JP2": "tanaka^hanako=田中^花子=たなか^はなこ",
            "P-NO": "hansen^ola",
        }
        assert {s.referring_key for s in Study.select()} == {"sato^jiro=佐藤^次郎="}
        assert "series_modality" in {i.name for i in index.db.get_indexes("series")}
    final, matches = find(
        node,
        identifier("STUDY", SpecificCharacterSet="ISO_IR 192", ReferringPhysicianName="=佐藤*"),
    )
    assert final.Status == status.SUCCESS and len(matches) == 3
