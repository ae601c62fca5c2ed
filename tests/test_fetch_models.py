"""fetch_models against a real local HTTP server: resume, checksums, retries, bad content, present files."""

from __future__ import annotations

import hashlib
import json
import logging
import socket

import pytest
from file_host import FakeFiles, glb

from assetlib.library import fetch_models as fm
from assetlib.library.fetch_models import FetchReport, ModelDownload, fetch_models, read_sha256_sums


@pytest.fixture
def server():
    with FakeFiles() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "BACKOFF_BASE_S", 0.01)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_downloads_several_files_then_reports_them_present_without_requests(server: FakeFiles, tmp_path):
    payloads = {f"/glbs/000-00{i}/uid{i}.glb": glb(i, 4000 + 1000 * i) for i in range(4)}
    server.files.update(payloads)
    items = [
        ModelDownload(
            f"a{i}", server.url(p), tmp_path / "out" / f"00{i}" / f"uid{i}.glb", sha(data) if i % 2 else None
        )
        for i, (p, data) in enumerate(payloads.items())
    ]

    first = fetch_models(items, workers=3)

    assert (first.downloaded, first.resumed, first.present, first.failures) == (4, 0, 0, [])
    assert first.bytes == sum(map(len, payloads.values()))
    for item, data in zip(items, payloads.values(), strict=True):
        assert item.dest.read_bytes() == data
        assert not item.dest.with_name(item.dest.name + ".part").exists()
    summary = json.loads(json.dumps(first.summary()))
    assert summary["downloaded"] == 4 and summary["failed"] == 0 and summary["bytes"] == first.bytes
    seen = len(server.requests)
    assert seen == 4

    second = fetch_models(items, workers=3)

    assert (second.downloaded, second.resumed, second.present, second.bytes) == (0, 0, 4, 0)
    assert len(server.requests) == seen  # nothing was asked for again


def test_a_dest_failing_its_checksum_is_fetched_again_from_scratch(server: FakeFiles, tmp_path):
    data = glb(7)
    server.files["/m.glb"] = data
    dest = tmp_path / "m.glb"
    dest.write_bytes(b"glTF" + b"\0" * 100)  # a stale or corrupt copy
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), dest, sha(data))])
    assert report.downloaded == 1 and report.present == 0
    assert dest.read_bytes() == data
    assert server.requests == [("/m.glb", None)]  # a whole-file request, not a resume


def test_dropped_body_is_resumed_with_a_range_request_in_the_same_call(server: FakeFiles, tmp_path):
    data = glb(1, 20000)
    server.files["/big.glb"] = data
    server.scripts["/big.glb"] = [("drop", 8000)]
    dest = tmp_path / "big.glb"

    report = fetch_models([ModelDownload("a", server.url("/big.glb"), dest, sha(data))], retries=2)

    assert report.failures == []
    assert (report.resumed, report.downloaded) == (1, 0)
    assert dest.read_bytes() == data
    assert server.requests == [("/big.glb", None), ("/big.glb", "bytes=8000-")]
    assert report.bytes == len(data)  # 8000 then the remaining 12000, nothing fetched twice


def test_dropped_body_leaves_a_part_that_the_next_run_resumes(server: FakeFiles, tmp_path):
    data = glb(2, 20000)
    server.files["/big.glb"] = data
    server.scripts["/big.glb"] = [("drop", 5000)]
    dest = tmp_path / "sub" / "big.glb"
    part = dest.with_name("big.glb.part")
    item = ModelDownload("a", server.url("/big.glb"), dest)

    first = fetch_models([item], retries=0)

    assert [f.asset_id for f in first.failures] == ["a"] and first.failures[0].stage == "fetch-models"
    assert not dest.exists()
    assert part.read_bytes() == data[:5000]

    second = fetch_models([item], retries=0)

    assert second.resumed == 1 and second.failures == []
    assert server.requests[-1] == ("/big.glb", "bytes=5000-")
    assert dest.read_bytes() == data and not part.exists()


def test_a_server_ignoring_ranges_restarts_the_file(server: FakeFiles, tmp_path):
    data = glb(3)
    server.files["/m.glb"] = data
    server.scripts["/m.glb"] = [("ignore-range",)]
    dest = tmp_path / "m.glb"
    dest.with_name("m.glb.part").write_bytes(data[:1000])
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), dest)])
    assert server.requests == [("/m.glb", "bytes=1000-")]
    assert (report.downloaded, report.resumed) == (1, 0)
    assert dest.read_bytes() == data  # the 200 body replaced the part instead of being appended to it


def test_a_complete_part_answered_416_is_verified_and_moved(server: FakeFiles, tmp_path):
    data = glb(4)
    server.files["/m.glb"] = data
    dest = tmp_path / "m.glb"
    dest.with_name("m.glb.part").write_bytes(data)  # a crash between the last byte and the rename
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), dest, sha(data))])
    assert server.requests == [("/m.glb", f"bytes={len(data)}-")]
    assert report.resumed == 1 and report.failures == []
    assert dest.read_bytes() == data


def test_sha256_right_passes_wrong_fails_and_leaves_nothing(server: FakeFiles, tmp_path):
    good, bad = glb(5), glb(6)
    server.files.update({"/good.glb": good, "/bad.glb": bad})
    items = [
        ModelDownload("good", server.url("/good.glb"), tmp_path / "good.glb", sha(good).upper()),
        ModelDownload("bad", server.url("/bad.glb"), tmp_path / "bad.glb", sha(b"something else")),
    ]
    report = fetch_models(items)
    assert report.downloaded == 1
    assert (tmp_path / "good.glb").read_bytes() == good
    [failure] = report.failures
    assert failure.asset_id == "bad" and "sha256 mismatch" in failure.reason
    assert not (tmp_path / "bad.glb").exists() and not (tmp_path / "bad.glb.part").exists()
    assert server.count("/bad.glb") == 1  # a wrong checksum is not retried


def test_404_fails_at_once_with_status_and_url(server: FakeFiles, tmp_path, caplog):
    url = server.url("/missing.glb")
    with caplog.at_level(logging.INFO, logger="assetlib.library.fetch_models"):
        report = fetch_models([ModelDownload("gone", url, tmp_path / "x.glb")], retries=3)
    [failure] = report.failures
    assert "404" in failure.reason and url in failure.reason
    assert server.count("/missing.glb") == 1
    assert not (tmp_path / "x.glb").exists() and not (tmp_path / "x.glb.part").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 file(s) failed" in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "0 downloaded" in infos[0] and "1 failed" in infos[0]


def test_503_twice_then_200_succeeds_after_retries(server: FakeFiles, tmp_path):
    data = glb(8)
    server.files["/m.glb"] = data
    busy = ("status", 503, b"busy", {"Retry-After": "0"})
    server.scripts["/m.glb"] = [busy, ("status", 503, b"busy", {})]
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), tmp_path / "m.glb")], retries=3)
    assert report.downloaded == 1 and report.failures == []
    assert server.count("/m.glb") == 3
    assert (tmp_path / "m.glb").read_bytes() == data


def test_transient_errors_give_up_after_the_retries(server: FakeFiles, tmp_path):
    server.files["/m.glb"] = glb(9)
    server.scripts["/m.glb"] = [("status", 429, b"slow down", {})] * 5
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), tmp_path / "m.glb")], retries=2)
    [failure] = report.failures
    assert "429" in failure.reason and "3 attempts" in failure.reason
    assert server.count("/m.glb") == 3

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = fetch_models(
        [ModelDownload("b", f"http://127.0.0.1:{port}/m.glb", tmp_path / "b.glb")], retries=1
    )
    assert [f.asset_id for f in refused.failures] == ["b"] and "ConnectError" in refused.failures[0].reason


def test_backoff_honours_retry_after_and_caps_it():
    assert fm._delay(0, 100.0) == fm.MAX_BACKOFF_S == 30.0
    assert fm._delay(0, 2.0) == 2.0
    assert fm._delay(3, None) == pytest.approx(fm.BACKOFF_BASE_S * 8)
    assert fm._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_an_html_page_answered_200_is_not_a_glb(server: FakeFiles, tmp_path):
    page = b"<!doctype html><html><body>Sign in to continue</body></html>"
    server.scripts["/m.glb"] = [("status", 200, page, {"Content-Type": "text/html"})]
    report = fetch_models([ModelDownload("a", server.url("/m.glb"), tmp_path / "m.glb")])
    [failure] = report.failures
    assert "not a glTF binary" in failure.reason
    assert not (tmp_path / "m.glb").exists() and not (tmp_path / "m.glb.part").exists()
    assert report.downloaded == 0


def test_two_sources_for_one_dest_fail_the_second(server: FakeFiles, tmp_path):
    server.files.update({"/a.glb": glb(10), "/b.glb": glb(11)})
    dest = tmp_path / "same.glb"
    first = ModelDownload("a", server.url("/a.glb"), dest)
    items = [first, first, ModelDownload("b", server.url("/b.glb"), dest)]
    report = fetch_models(items)
    assert report.downloaded == 1 and [f.asset_id for f in report.failures] == ["b"]
    assert dest.read_bytes() == glb(10) and server.count("/b.glb") == 0 and server.count("/a.glb") == 1


def test_read_sha256_sums_reads_text_and_binary_markers(tmp_path):
    one, two, three = sha(b"1"), sha(b"2"), sha(b"3").upper()
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(
        f"{one}  000-000/a.glb\n\n{two} *000-001/b c.glb\n# comment\n{three}  ./000-002/d.glb\n",
        encoding="utf-8",
    )
    assert read_sha256_sums(sums) == {
        "000-000/a.glb": one,
        "000-001/b c.glb": two,
        "000-002/d.glb": three.lower(),
    }
    sums.write_text(f"{one}  ok.glb\nnot a sum line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_sha256_sums(sums)


def test_empty_report_summary_is_plain():
    assert FetchReport().summary()["mb_per_s"] == 0.0
    assert fetch_models([]).summary()["failed"] == 0
