"""The URL shape check: a base address of the backoffice API, never a
method URL, without blanks, query or credentials."""

import pytest

from tools import url_shape
from tools.url_shape import check_base_url

BASE = "https://perizinan.karokab.go.id/backoffice/api"


@pytest.mark.parametrize(
    "url",
    [
        BASE,
        f"{BASE}/",
        f"  {BASE}  ",
        "http://10.0.0.5:8080/backoffice/api",
        "https://sicantik.example.test",
    ],
)
def test_base_urls_pass(url):
    assert check_base_url(url).ok


@pytest.mark.parametrize(
    ("url", "part"),
    [
        (f"{BASE}/jumlahPerizinan", "/jumlahPerizinan"),
        (f"{BASE}/JUMLAHPERIZINAN", "/JUMLAHPERIZINAN"),
        (f"{BASE}/listpermohonanterbit", "/listpermohonanterbit"),
        # Path arguments may hold a secret: only hinted at.
        (f"{BASE}/listpermohonanterbit/limit/10/offset/0", "/listpermohonanterbit/…"),
        (f"{BASE}/jenisperizinanlist.json", "/jenisperizinanlist.json"),
        (f"{BASE}/cekperizinan/", "/cekperizinan"),
    ],
)
def test_method_urls_say_which_part_to_remove(url, part):
    shape = check_base_url(url)
    assert shape.problem == url_shape.METHOD
    assert shape.part == part
    assert shape.base == BASE


def test_a_method_url_with_a_query_offers_the_base_without_the_query():
    shape = check_base_url(f"{BASE}/listpermohonanterbit?apikey=S3cret&limit=1")
    assert shape.problem == url_shape.QUERY
    assert "S3cret" not in shape.part + shape.base
    assert shape.base == BASE


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", url_shape.EMPTY),
        ("   ", url_shape.EMPTY),
        ("https://perizinan.karokab.go.id/backoffice api", url_shape.SPACE),
        ("https://perizinan .karokab.go.id/backoffice/api", url_shape.SPACE),
        ("https://perizinan.karokab.go.id/\tbackoffice/api", url_shape.SPACE),
        ("perizinan.karokab.go.id/backoffice/api", url_shape.SCHEME),
        ("ftp://example.test/api", url_shape.SCHEME),
        ("https://", url_shape.HOST),
        ("https://user:secret@example.test/api", url_shape.CREDENTIALS),
        ("https://example.test:99999/api", url_shape.PORT),
        (f"{BASE}#top", url_shape.QUERY),
    ],
)
def test_other_problems(url, problem):
    assert check_base_url(url).problem == problem


def test_a_path_that_only_contains_a_method_name_inside_a_word_passes():
    # "kabupaten" is a method; "kabupatenkaro" is not.
    assert check_base_url("https://kabupatenkaro.example/backoffice/api").ok
    assert check_base_url(f"{BASE}/kabupatenkaro").ok
