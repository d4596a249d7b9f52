"""`archive-node import` end to end: JPEG, MP4 and PDF files made DICOM, stored as a C-STORE
from the hospital would be, found by C-FIND under the patient and issuer, retrieved by C-GET and
C-MOVE with the input's bytes, read by dcmdump and dciodvfy; every bad input stores nothing."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_fragments
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from archive_node.cli import cli
from archive_node.config import CONFIG_ENV, INDEX_URL_ENV
from archive_node.dicom import status
from archive_node.errors import Conflict, InvalidInput, NotFound
from archive_node.importing.importer import (
    ALREADY_STORED,
    IMPORTER_AE,
    STORED,
    Importer,
    ImportRequest,
    derived_uid,
)
from archive_node.importing.media.refusal import Refusal
from archive_node.importing.wrapping import ENCAPSULATED_PDF, VIDEO_PHOTOGRAPHIC, VL_PHOTOGRAPHIC
from tests.helpers import dicom_objects
from tests.helpers.cli import write_config
from tests.helpers.dcmtk import TOOLS, counts, final_response, getscu, output
from tests.helpers.dimse import associate, find, store
from tests.helpers.environment import REQUIRE_DCMTK, REQUIRE_MEDIA_TOOLS
from tests.helpers.identifiers import identifier
from tests.helpers.media_files import DCIODVFY, FFMPEG, jpeg, mp4, needs_ffmpeg, pdf
from tests.helpers.retrieving import (
    STUDY_MOVE,
    Destination,
    get_study,
    move,
)
from tests.helpers.serving import make_config

pytestmark = needs_ffmpeg
DCMDUMP = shutil.which("dcmdump")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """One photo (EXIF time, camera), one H.264 video, one PDF, and bad files, made once."""
    folder = tmp_path_factory.mktemp("media")
    made = {
        "photo": jpeg(folder / "skin.jpg", taken="2026:03:04 10:11:12", make="SynthCam"),
        "photo2": jpeg(folder / "skin2.jpg", size=(40, 30)),
        "video": mp4(folder / "wound.mp4"),
        "document": pdf(folder / "referral.pdf"),
        "progressive": jpeg(folder / "progressive.jpg", progressive=True),
        "text": folder / "notes.txt",
        "mpeg4_part2": mp4(folder / "old.mp4", "-c:v", "mpeg4"),
    }
    made["text"].write_text("not a picture\n")
    made["quicktime"] = folder / "phone.mov"
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-i",
            str(made["video"]),
            "-c",
            "copy",
            str(made["quicktime"]),
        ],
        check=True,
        timeout=60,
    )
    made["high10"] = mp4(folder / "high10.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p10le")
    made["heic"] = folder / "phone.heic"
    made["heic"].write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    made["huge_pdf"] = folder / "huge.pdf"  # sparse: 4 GiB that take no disk
    with open(made["huge_pdf"], "wb") as fh:
        fh.write(b"%PDF-1.4\n")
        fh.truncate(4 * 2**30)
        fh.seek(4 * 2**30 - 6)
        fh.write(b"%%EOF\n")
    # a baseline JPEG whose frame header claims 40000 x 40000 pixels
    data = made["photo"].read_bytes()
    sof = data.index(b"\xff\xc0")
    made["huge"] = folder / "huge.jpg"
    made["huge"].write_bytes(data[: sof + 5] + b"\x9c\x40\x9c\x40" + data[sof + 9 :])
    for kind, source in (("photo", "truncated.jpg"), ("video", "truncated.mp4")):
        data = made[kind].read_bytes()
        made[f"truncated_{kind}"] = folder / source
        made[f"truncated_{kind}"].write_bytes(data[: len(data) * 2 // 3])
    return made


def request(paths, **overrides) -> ImportRequest:
    values = {"hospital": "UNN", "patient_id": "IMP-1", "patient_name": "Nordmann^Åse"}
    return ImportRequest(paths=[Path(p) for p in paths], **{**values, **overrides})


def run_import(service, paths, **overrides):
    return Importer(service).run(request(paths, **overrides))


def carried(path: Path) -> bytes:
    """The bytes a stored instance carries: its Pixel Data fragments joined, or its
    Encapsulated Document cut to its Encapsulated Document Length."""
    ds = dcmread(path)
    if "EncapsulatedDocument" in ds:
        return ds.EncapsulatedDocument[: ds.EncapsulatedDocumentLength]
    return b"".join(generate_fragments(ds.PixelData))


def assert_carries(path: Path, source: Path) -> None:
    """The instance holds the source's bytes unchanged, with at most PS3.5's one pad byte."""
    data, original = carried(path), source.read_bytes()
    assert data[: len(original)] == original
    assert data[len(original) :] in (b"", b"\0")
    assert len(data) % 2 == 0 or "EncapsulatedDocument" in dcmread(path)


def assert_nothing_stored(service) -> None:
    assert service.index.instances.count() == 0
    kept = [p for p in service.storage.root.rglob("*") if p.is_file()]
    assert kept == [], f"files left in the store: {kept}"


def stored_path(service, sop_uid: str) -> Path:
    record = service.index.instances.find(sop_uid)
    assert record is not None
    return service.storage.absolute(record.path)


# -- the three kinds, found and retrieved ------------------------------------------------------


def test_photo_video_and_pdf_become_one_study_found_and_got_byte_for_byte(node, media, tmp_path):
    service = node.service
    report = run_import(
        service,
        [media["photo"], media["video"], media["document"]],
        birth_date="19700101",
        sex="F",
        study_description="Wound follow-up",
        body_part="ARM",
    )
    assert report.complete and report.new_study
    assert [f.status for f in report.files] == [STORED] * 3
    assert [f.sop_class_uid for f in report.files] == [
        VL_PHOTOGRAPHIC,
        VIDEO_PHOTOGRAPHIC,
        ENCAPSULATED_PDF,
    ]
    assert [f.transfer_syntax_uid for f in report.files] == [
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.1",
    ]
    assert len({f.series_instance_uid for f in report.files}) == 3

    # C-FIND: the study under the patient and the hospital's issuer, not another issuer's
    query = identifier(
        "STUDY",
        PatientID="IMP-1",
        IssuerOfPatientID="UNN",
        StudyInstanceUID="",
        PatientName="",
        StudyDate="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="",
        StudyDescription="",
        SpecificCharacterSet="ISO_IR 192",
    )
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS and len(matches) == 1
    match = matches[0]
    assert match.StudyInstanceUID == report.study_instance_uid
    assert str(match.PatientName) == "Nordmann^Åse"
    assert match.StudyDate == "20260304"  # when the photo was taken (EXIF)
    assert set(match.ModalitiesInStudy) == {"XC", "DOC"}
    assert int(match.NumberOfStudyRelatedInstances) == 3
    assert match.StudyDescription == "Wound follow-up"
    assert find(node, identifier("STUDY", PatientID="IMP-1", IssuerOfPatientID="NLSH"))[1] == []

    # C-GET: each instance arrives carrying the input's bytes
    final, received = get_study(node, "UNN_WS", tmp_path / "got", report.study_instance_uid)
    assert final.Status == status.SUCCESS
    assert set(received.files) == {f.sop_instance_uid for f in report.files}
    for item, source in zip(report.files, ["photo", "video", "document"], strict=True):
        assert_carries(received.files[item.sop_instance_uid], media[source])
        assert received.syntaxes[item.sop_instance_uid] == item.transfer_syntax_uid

    photo = dcmread(received.files[report.files[0].sop_instance_uid], stop_before_pixels=True)
    assert (photo.Rows, photo.Columns, photo.SamplesPerPixel) == (61, 97, 3)
    assert photo.PhotometricInterpretation == "YBR_FULL_422"
    assert photo.Manufacturer == "SynthCam"
    assert photo.BodyPartExamined == "ARM"
    kept = dcmread(stored_path(service, report.files[0].sop_instance_uid), stop_before_pixels=True)
    assert kept.file_meta.SendingApplicationEntityTitle == IMPORTER_AE
    assert kept.file_meta.ImplementationVersionName.startswith("ARCHNODE_")
    video = dcmread(received.files[report.files[1].sop_instance_uid], stop_before_pixels=True)
    assert (video.NumberOfFrames, video.Rows, video.Columns) == (25, 48, 64)
    assert float(video.FrameTime) == 40.0 and video.CineRate == 25
    assert video.PhotometricInterpretation == "YBR_PARTIAL_420"


def test_imported_study_is_moved_to_a_workstation(node, media, tmp_path):
    report = run_import(node.service, [media["photo"], media["document"]])
    destination = Destination(tmp_path / "dest")
    node.service.registry.add_ae("DEST", "UNN", host="127.0.0.1", port=destination.port)
    try:
        assoc = associate(node, "UNN_WS", [STUDY_MOVE])
        try:
            final, _, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=report.study_instance_uid)
            )
        finally:
            assoc.release()
    finally:
        destination.stop()
    assert final.Status == status.SUCCESS
    files = destination.received.files
    assert_carries(files[report.files[0].sop_instance_uid], media["photo"])
    assert_carries(files[report.files[1].sop_instance_uid], media["document"])


@pytest.mark.skipif(DCMDUMP is None, reason="DCMTK dcmdump not installed")
def test_dcmdump_and_dciodvfy_read_the_objects_without_errors(service, registry, media):
    hevc = mp4(
        media["video"].with_name("hevc.mp4"),
        "-c:v",
        "libx265",
        "-pix_fmt",
        "yuv420p",
        "-x265-params",
        "log-level=none",
    )
    report = run_import(
        service, [media["photo"], media["video"], media["document"], hevc], sex="F"
    )
    assert report.complete
    for item in report.files:
        path = stored_path(service, item.sop_instance_uid)
        dump = subprocess.run(
            [DCMDUMP, "-q", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert dump.returncode == 0 and "E:" not in dump.stdout + dump.stderr, dump.stderr
        if DCIODVFY is None and REQUIRE_MEDIA_TOOLS:
            pytest.fail("dciodvfy missing but ARCHIVE_NODE_REQUIRE_MEDIA_TOOLS=1")
        if DCIODVFY is None or item.transfer_syntax_uid == "1.2.840.10008.1.2.4.107":
            continue  # dicom3tools of 2022 cannot read the HEVC syntaxes
        check = subprocess.run(
            [DCIODVFY, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        errors = [line for line in check.stderr.splitlines() if line.startswith("Error")]
        assert errors == [], f"{item.path}: {errors}"


# -- idempotence and placement -----------------------------------------------------------------


def test_importing_the_same_files_again_stores_nothing_new(service, registry, media):
    first = run_import(service, [media["photo"], media["document"]])
    again = run_import(service, [media["photo"], media["document"]])
    assert again.study_instance_uid == first.study_instance_uid and not again.new_study
    assert [f.status for f in again.files] == [ALREADY_STORED] * 2
    assert [f.sop_instance_uid for f in again.files] == [f.sop_instance_uid for f in first.files]
    assert service.index.instances.count() == 2


@pytest.mark.parametrize("how", ["a copy", "the same path"])
def test_the_same_file_twice_in_one_call_is_one_instance(service, registry, media, tmp_path, how):
    again = tmp_path / "copy.jpg" if how == "a copy" else media["photo"]
    if how == "a copy":
        again.write_bytes(media["photo"].read_bytes())
    report = run_import(service, [media["photo"], again])
    assert [f.status for f in report.files] == [STORED, ALREADY_STORED]
    assert report.files[1].detail == f"the same file as {media['photo']}"
    assert service.index.instances.count() == 1
    assert report.files[0].instance_number == 1


def test_a_file_imported_before_stays_in_its_study_and_the_new_ones_join_it(
    service, registry, media
):
    first = run_import(service, [media["photo"]])
    later = run_import(service, [media["photo"], media["photo2"], media["document"]])
    assert later.study_instance_uid == first.study_instance_uid and not later.new_study
    assert [f.status for f in later.files] == [ALREADY_STORED, STORED, STORED]
    assert later.files[0].instance_number == 1 and later.files[1].instance_number == 2
    assert len(service.index.instances.studies(patient_id="IMP-1")) == 1
    assert service.index.instances.count() == 3


def test_re_import_restores_a_stored_file_that_went_missing(service, registry, media):
    first = run_import(service, [media["photo"], media["document"]])
    path = stored_path(service, first.files[1].sop_instance_uid)
    kept = path.read_bytes()
    path.unlink()
    again = run_import(service, [media["photo"], media["document"]])
    assert [(f.status, f.detail) for f in again.files] == [
        (ALREADY_STORED, "imported before"),
        (STORED, "restored"),
    ]
    assert path.read_bytes() == kept  # the same bytes: nothing in them depends on the time


def test_exif_text_is_made_fit_for_its_attributes(service, registry, tmp_path):
    photo = jpeg(tmp_path / "odd.jpg", make="Can\\on\x07 " + "X" * 80, model="M\x01odel")
    report = run_import(service, [photo])
    kept = dcmread(stored_path(service, report.files[0].sop_instance_uid), stop_before_pixels=True)
    assert kept.Manufacturer == ("Can on " + "X" * 80)[:64]
    assert kept.ManufacturerModelName == "M odel"


def test_a_motion_photo_keeps_its_jpeg_and_says_what_follows_is_not_kept(
    service, registry, media, tmp_path
):
    motion = tmp_path / "motion.jpg"
    motion.write_bytes(media["photo"].read_bytes() + media["video"].read_bytes())
    report = run_import(service, [motion])
    item = report.files[0]
    data, photo = carried(stored_path(service, item.sop_instance_uid)), media["photo"].read_bytes()
    assert data[: len(photo)] == photo and data[len(photo) :] in (b"", b"\0")
    assert any("not part of the photo" in warning for warning in item.warnings)


def test_an_accession_number_gathers_later_imports_into_its_study(service, registry, media):
    first = run_import(service, [media["photo"]], accession_number="ACC-9")
    later = run_import(service, [media["photo2"], media["video"]], accession_number="ACC-9")
    assert later.study_instance_uid == first.study_instance_uid and not later.new_study
    assert later.files[0].series_instance_uid == first.files[0].series_instance_uid
    assert [f.instance_number for f in later.files] == [2, 1]  # photo series goes on
    other = run_import(service, [media["photo"]], accession_number="ACC-10")
    assert other.study_instance_uid != first.study_instance_uid


def test_a_study_uid_adds_to_a_study_stored_by_c_store(node, media):
    study_uid = generate_uid()
    ct = dicom_objects.ct(study_uid=study_uid, patient_id="IMP-1")
    ct.IssuerOfPatientID = "UNN"
    ct.StudyDate = "20250102"
    assert store(node, ct) == status.SUCCESS
    report = run_import(node.service, [media["photo"]], study_uid=study_uid)
    assert not report.new_study and report.study_instance_uid == study_uid
    kept = dcmread(stored_path(node.service, report.files[0].sop_instance_uid))
    assert kept.StudyDate == "20250102"  # the study's, not the photo's

    with pytest.raises(Conflict, match="another patient"):
        run_import(node.service, [media["photo2"]], study_uid=study_uid, patient_id="IMP-2")
    assert node.service.index.instances.count() == 2


def test_the_given_hospital_is_the_source_for_hospital_scope(node, media):
    node.service.registry.add_ae(
        "NLSH_WS", "NLSH", host="127.0.0.1", allow="find", scope="hospital"
    )
    node.service.registry.add_ae(
        "UNN_SCOPED", "UNN", host="127.0.0.1", allow="find", scope="hospital"
    )
    report = run_import(node.service, [media["photo"]], hospital="NLSH", patient_id="N-7")
    assert report.issuer == "NLSH"
    query = identifier("STUDY", PatientID="N-7", StudyInstanceUID="")
    for calling, expected in (("NLSH_WS", 1), ("UNN_SCOPED", 0), ("UNN_WS", 1)):
        final, found = find(node, query, calling=calling)
        assert final.Status == status.SUCCESS and len(found) == expected, calling
    assert service_hospital(node.service, report.files[0].sop_instance_uid) == "NLSH"


def service_hospital(service, sop_uid: str) -> str:
    return service.index.instances.find(sop_uid).hospital


def test_uids_are_made_under_the_configured_root(tmp_path, sqlite_url, media):
    from archive_node.service import ArchiveService

    root = "1.2.826.0.1.3680043.10.999"
    service = ArchiveService.from_config(
        make_config(tmp_path, sqlite_url, node={"uid_root": root})
    )
    service.index.init_schema()
    service.registry.add_hospital("UNN", "UNN", issuer="UNN")
    try:
        report = run_import(service, [media["photo"]])
    finally:
        service.index.close()
    item = report.files[0]
    for uid in (report.study_instance_uid, item.series_instance_uid, item.sop_instance_uid):
        assert uid.startswith(root + ".") and len(uid) <= 64
    assert derived_uid(root, "x") == derived_uid(root, "x") != derived_uid(root, "y")
    assert derived_uid("", "x").startswith("2.25.")


# -- bad input stores nothing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "overrides", "error", "message"),
    [
        (["text"], {}, Refusal, "not a JPEG, MP4 or PDF"),
        (["truncated_photo"], {}, Refusal, "truncated"),
        (["progressive"], {}, Refusal, "progressive"),
        (["truncated_video"], {}, Refusal, "truncated"),
        (["mpeg4_part2"], {}, Refusal, "MPEG-4 Part 2"),
        (["quicktime"], {}, Refusal, "QuickTime"),
        (["huge"], {}, Refusal, "1600-megapixel"),
        (["high10"], {}, Refusal, r"high10\.mp4: H\.264 High 10 profile"),
        (["heic"], {}, Refusal, "HEIF/HEIC"),
        (["huge_pdf"], {}, Refusal, "more than one DICOM value holds"),
        (["photo"], {"patient_name": "A=B=C=D"}, InvalidInput, "3 component groups"),
        (["photo", "video", "text"], {}, Refusal, "notes.txt"),
        (["photo"], {"patient_id": " "}, InvalidInput, "patient ID is required"),
        (["photo"], {"hospital": "NOPE"}, NotFound, "no hospital 'NOPE'"),
        (["photo"], {"birth_date": "19701301"}, InvalidInput, "--birth-date"),
        (["photo"], {"study_uid": "1.2.abc"}, InvalidInput, "--study-uid"),
        (["photo"], {"study_uid": "1.2.3", "accession_number": "A"}, InvalidInput, "not both"),
        (["photo"], {"patient_name": "A\\B"}, InvalidInput, "backslash"),
        (["photo"], {"accession_number": "X" * 17}, InvalidInput, "16 characters"),
        (["photo"], {"body_part": "arm"}, InvalidInput, "--body-part"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    service, registry, media, files, overrides, error, message
):
    with pytest.raises(error, match=message):
        run_import(service, [media[name] for name in files], **overrides)
    assert_nothing_stored(service)


def test_a_file_that_changes_while_imported_is_not_kept(service, registry, media, tmp_path):
    growing = tmp_path / "growing.pdf"
    growing.write_bytes(media["document"].read_bytes())

    class AppendWhileWriting:
        """Progress that appends to the file once its copy begins (a recorder still writing)."""

        def begin(self, label: str, total: int) -> None:
            if label.startswith("writing"):
                with open(growing, "ab") as fh:
                    fh.write(b"%% more\n%%EOF\n")

        def advance(self, amount: int) -> None:
            pass

        def end(self) -> None:
            pass

    report = Importer(service, progress=AppendWhileWriting()).run(request([growing]))
    assert not report.complete
    assert report.files[0].status == "failed"
    assert report.files[0].detail == "the file changed while it was imported"
    assert_nothing_stored(service)


# -- bounded memory ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_large_video_is_imported_with_bounded_memory(service, registry, media, tmp_path):
    """A 64 MiB MP4 (a real stream and a large 'free' box, as some recorders reserve) is
    imported with a Python peak far below its size, and carried unchanged."""
    large = tmp_path / "large.mp4"
    with open(large, "wb") as fh:
        fh.write(media["video"].read_bytes())
        size = 64 * 1024 * 1024
        fh.write((size + 8).to_bytes(4, "big") + b"free")
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            fh.write(block)
    tracemalloc.start()
    try:
        report = run_import(service, [large])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.complete
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 64 MiB video"
    assert_carries(stored_path(service, report.files[0].sop_instance_uid), large)


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path, monkeypatch, sqlite_url):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, sqlite_url)
    runner = CliRunner()
    for args in (["init"], ["hospital", "add", "UNN", "--name", "UNN", "--issuer", "UNN-PID"]):
        result = runner.invoke(cli, ["-c", str(config), *args])
        assert result.exit_code == 0, result.output
    return runner, config


def test_cli_import_prints_json_and_exits_zero(cli_env, media):
    runner, config = cli_env
    args = ["-c", str(config), "import", str(media["photo"]), str(media["document"])]
    result = runner.invoke(cli, [*args, "--hospital", "UNN", "--patient-id", "P9", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["issuer"] == "UNN-PID" and report["new_study"] is True
    assert [f["status"] for f in report["files"]] == [STORED, STORED]
    assert all(f["stored_bytes"] > f["file_bytes"] for f in report["files"])

    again = runner.invoke(cli, [*args, "--hospital", "UNN", "--patient-id", "P9"])
    assert again.exit_code == 0, again.output
    assert "already stored" in again.stdout and report["study_instance_uid"] in again.stdout


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--hospital", "UNN", "--patient-id", "P9", "NOTES"], 1, "not a JPEG, MP4 or PDF"),
        (["--hospital", "XX", "--patient-id", "P9"], 1, "no hospital 'XX'"),
        (["--hospital", "UNN"], 2, "--patient-id"),
        (["--hospital", "UNN", "--patient-id", "P9", "--sex", "Q"], 2, "--sex"),
    ],
)
def test_cli_import_refusals_exit_non_zero_with_one_line(cli_env, media, extra, code, message):
    runner, config = cli_env
    args = ["-c", str(config), "import", str(media["photo"])]
    args += [str(media["text"]) if a == "NOTES" else a for a in extra]
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    studies = runner.invoke(cli, ["-c", str(config), "studies", "--json"])
    assert json.loads(studies.stdout) == []


def test_import_request_fields_match_the_cli_options():
    """Every ImportRequest field has its option (a new field without one would be silent)."""
    options = {p.name for p in cli.commands["import"].params}
    names = {"accession_number": "accession"}
    for field in dataclasses.fields(ImportRequest):
        assert names.get(field.name, field.name) in options, field.name


@pytest.mark.skipif(not REQUIRE_MEDIA_TOOLS, reason="ARCHIVE_NODE_REQUIRE_MEDIA_TOOLS is not set")
def test_the_media_tools_are_there_where_required():
    assert FFMPEG is not None and DCIODVFY is not None


def test_done_when_cli_import_is_found_retrieved_and_read(node, media, tmp_path, index_url):
    """The issue's 'done when': a dermatology photo, a wound video and a scanned PDF imported
    from the CLI into the serving node's store and index are found by a workstation's C-FIND
    under the right patient and issuer, retrieved byte for byte, and read by dcmdump."""
    config = write_config(tmp_path, index_url, name="cli.toml")
    files = [str(media[kind]) for kind in ("photo", "video", "document")]
    patient = ["--hospital", "NLSH", "--patient-id", "D-1", "--patient-name", "Hansen^Ola"]
    # its own process, as an admin runs it (in this one, it would rebind the node's tables)
    result = subprocess.run(
        [sys.executable, "-m", "archive_node", "-c", config, "import", *files, *patient, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["issuer"] == "NLSH"

    query = identifier("STUDY", PatientID="D-1", IssuerOfPatientID="NLSH", StudyInstanceUID="")
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert [m.StudyInstanceUID for m in matches] == [report["study_instance_uid"]]

    final, received = get_study(node, "UNN_WS", tmp_path / "got", matches[0].StudyInstanceUID)
    assert final.Status == status.SUCCESS
    for item, kind in zip(report["files"], ("photo", "video", "document"), strict=True):
        path = received.files[item["sop_instance_uid"]]
        assert_carries(path, media[kind])
        if DCMDUMP is not None:
            dump = subprocess.run([DCMDUMP, "-q", str(path)], capture_output=True, timeout=60)
            assert dump.returncode == 0 and b"E:" not in dump.stdout + dump.stderr


# -- a peer nobody here wrote --------------------------------------------------------------------


@pytest.mark.dcmtk
@pytest.mark.skipif(
    TOOLS["getscu"] is None and not REQUIRE_DCMTK, reason="DCMTK getscu not installed"
)
def test_dcmtk_getscu_retrieves_each_imported_kind(node, media, tmp_path):
    """The video and the PDF arrive carrying their source's bytes. getscu +xy proposes one
    context per class, JPEG first then uncompressed: the node accepts it uncompressed for
    image classes (so that no object of the class fails) and the photo arrives decompressed,
    its lossy history kept; with the JPEG syntax alone proposed it goes as stored
    (tests/node/test_decompress_on_retrieve.py)."""
    report = run_import(node.service, [media["photo"], media["video"], media["document"]])
    study = report.study_instance_uid
    for item, source, prefer in zip(
        report.files, ["photo", "video", "document"], ["+xy", "+xn", ""], strict=True
    ):
        proc, files = getscu(
            node,
            tmp_path,
            "-S",
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={item.series_instance_uid}",
            prefer=prefer,
        )
        final = final_response(proc, "C-GET RSP")
        assert (final.status, *counts(final)) == (status.SUCCESS, 1, 0, 0), output(proc)
        assert set(files) == {item.sop_instance_uid}
        if source == "photo":
            received = dcmread(files[item.sop_instance_uid])
            assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            with Image.open(media[source]) as photo:
                assert (received.Columns, received.Rows) == photo.size
            assert received.PhotometricInterpretation == "RGB"
            assert received.LossyImageCompression == "01"
        else:
            assert_carries(files[item.sop_instance_uid], media[source])
