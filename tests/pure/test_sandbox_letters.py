"""The sandbox's registrations with two letters, and its unstable order of ties."""

import json
from collections import Counter
from datetime import date
from urllib.parse import quote

import pytest
from test_sandbox import fetch

from sandbox import SandboxServer, generate_dataset
from sandbox.__main__ import build_parser
from sandbox.data import b64

TODAY = date(2025, 6, 15)


@pytest.fixture(scope="module")
def ds():
    return generate_dataset(permits=2000, seed=9, today=TODAY, second_letters=0.02)


def _registrations(dataset):
    return {pid: ps for pid, ps in dataset.letters.items() if len(ps) == 2}


def test_some_registrations_carry_two_letters_each_with_its_own_dates(ds):
    two = _registrations(ds)
    assert len(two) == 40 == ds.summary()["second_letters"]
    assert len(ds.permits) == 2000  # letters, over fewer registrations
    for first, second in two.values():
        assert first.no_surat != second.no_surat
        assert first.d_berlaku_izin != second.d_berlaku_izin
        assert (second.applicants, second.company) == (first.applicants, first.company)
        assert second.d_terima_berkas == first.d_terima_berkas
        assert second.n_perizinan == first.n_perizinan
        assert ds.by_pendaftaran_id[first.pendaftaran_id] is first


def test_the_list_serves_one_row_per_applicant_and_letter(ds):
    rows = Counter((r["pendaftaran_id"], r["no_surat"]) for r in ds.listed_rows())
    for pid, letters in _registrations(ds).items():
        for permit in letters:
            assert rows[(pid, permit.no_surat)] == len(permit.applicants)
    # The receipt date still orders the list, descending.
    dates = [p.d_terima_berkas for p, _who in ds.rows]
    assert dates == sorted(dates, reverse=True)


def test_same_seed_same_letters_and_none_by_default(ds):
    again = generate_dataset(permits=2000, seed=9, today=TODAY, second_letters=0.02)
    assert [p.as_dict() for p in again.permits] == [p.as_dict() for p in ds.permits]
    plain = generate_dataset(permits=2000, seed=9, today=TODAY)
    assert plain.summary()["second_letters"] == 0
    assert len(plain.by_pendaftaran_id) == 2000
    with pytest.raises(ValueError):
        generate_dataset(permits=10, second_letters=0.9)


def test_cekperizinan_answers_per_letter(ds):
    first, second = next(iter(_registrations(ds).values()))
    with SandboxServer(dataset=ds, seed=9) as server:
        for permit in (first, second):
            answer = fetch(
                server.url,
                f"/cekperizinan?no_izin={quote(b64(permit.no_surat))}&format=json",
            )
            items = json.loads(answer.body)
            assert answer.status == 200
            assert {i["no_surat"] for i in items} == {permit.no_surat}
            assert {i["d_berlaku_izin"] for i in items} == {permit.d_berlaku_izin}
            assert len(items) == len(permit.applicants)


def _order(dataset):
    return [(p.pendaftaran_id, p.no_surat, who.n_pemohon) for p, who in dataset.rows]


def test_ties_are_reordered_per_pass_seeded_and_never_lost():
    dataset = generate_dataset(permits=600, seed=4, today=TODAY, second_letters=0.05)
    twin = generate_dataset(permits=600, seed=4, today=TODAY, second_letters=0.05)
    before = _order(dataset)
    dataset.shuffle_ties = twin.shuffle_ties = "pass"
    dataset.before_list_request(50)  # inside a pass: nothing moves
    assert _order(dataset) == before
    dataset.before_list_request(0)  # a pass starts
    after = _order(dataset)
    assert after != before and sorted(after) == sorted(before)
    dates = [p.d_terima_berkas for p, _who in dataset.rows]
    assert dates == sorted(dates, reverse=True)  # only ties move
    twin.before_list_request(0)
    assert _order(twin) == after  # seeded
    dataset.shuffle_ties = "request"
    dataset.before_list_request(50)
    assert _order(dataset) != after


def test_reordering_keeps_rows_a_test_removed():
    dataset = generate_dataset(permits=200, seed=4, today=TODAY)
    rows = dataset.rows
    del rows[:10]
    dataset.reorder_ties()
    assert dataset.rows is rows and len(rows) == len(dataset.listed_rows())
    assert len(rows) == sum(len(p.applicants) for p in dataset.permits if p.listed) - 10


def test_cli_options():
    args = build_parser().parse_args(
        ["--second-letters", "0", "--shuffle-ties", "pass"]
    )
    assert (args.second_letters, args.shuffle_ties) == (0.0, "pass")
    args = build_parser().parse_args([])
    assert (args.second_letters, args.shuffle_ties) == (0.01, "off")
