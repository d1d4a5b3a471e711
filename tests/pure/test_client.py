"""SicantikApi without a server: configuration, errors, canned transport answers.

Everything that a real server can produce is tested against the sandbox in
``test_client_sandbox.py``; the canned adapter here only stands in for answers
the sandbox never gives (redirects, access denied, odd statuses).
"""

import io
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter

from tools import const
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import (
    SicantikBadRequest,
    SicantikConfigError,
    SicantikDataError,
    SicantikError,
    SicantikRateLimited,
    SicantikServerError,
    SicantikTimeout,
)
from tools.sicantik_transport import scrub

ROOT = Path(__file__).resolve().parents[2]


class CannedAdapter(BaseAdapter):
    """Transport adapter answering every request with one canned response."""

    def __init__(self, status, headers=None, body=b""):
        super().__init__()
        self.status, self.headers, self.body = status, headers or {}, body
        self.requests = []

    def send(self, request, **kwargs):
        self.requests.append((request, kwargs))
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(self.body),
            headers=self.headers,
            status=self.status,
            preload_content=False,
        )
        return HTTPAdapter().build_response(request, raw)

    def close(self):
        pass


def canned(status, headers=None, body=b"", **kwargs):
    api = SicantikApi(
        "https://sicantik.example/backoffice/api",
        rate_limit=None,
        backoff_base=0.001,
        backoff_max=0.001,
        **kwargs,
    )
    adapter = CannedAdapter(status, headers, body)
    api._session.mount("https://", adapter)
    return api, adapter


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "empty"),
        (None, "empty"),
        ("ftp://example.test/api", "http:// or https://"),
        ("perizinan.karokab.go.id/backoffice/api", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://", "no host"),
        ("https://user:secret@example.test/api", "user name or password"),
        ("https://example.test/api?key=secret", "query string"),
        ("https://example.test/api#x", "query string or fragment"),
        ("https://example.test:99999/api", "not a valid URL"),
    ],
)
def test_bad_urls_are_config_errors(url, words):
    with pytest.raises(SicantikConfigError) as info:
        SicantikApi(url)
    assert words in str(info.value)
    assert "secret" not in str(info.value)
    assert info.value.failure_type == "config"
    assert info.value.retryable is False
    assert info.value.scope == "system"


def test_url_is_normalised_and_session_configured():
    api = SicantikApi("  HTTPS://Perizinan.Karokab.go.id/backoffice/api/  ")
    assert api.base_url == "https://Perizinan.Karokab.go.id/backoffice/api"
    assert api.host == "Perizinan.Karokab.go.id"
    session = api._session
    assert session.headers["User-Agent"] == "sicantik_connector/18.0.1.3.0 (+Odoo 18)"
    assert session.headers["Accept"] == "application/json"
    assert session.headers["Accept-Encoding"] == "gzip"
    assert session.verify is True
    adapter = session.get_adapter("https://x")
    assert adapter._pool_maxsize == api.max_workers == 4
    assert adapter.max_retries.total == 0
    assert api.timeout == (5.0, 30.0)
    # The margin: the client paces just under the server-side limit.
    assert api.limiter.rate == pytest.approx(10 * (1 - const.RATE_SAFETY_MARGIN))
    api.close()
    api.close()  # idempotent


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": (0, 5)},
        {"timeout": "soon"},
        {"max_workers": 0},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"rate_limit": -1},
        {"rate_limit": float("nan")},
        {"retry_after_cap": float("inf")},
        {"backoff_base": -0.1},
        {"max_response_bytes": 0},
        {"response_format": "yaml"},
    ],
)
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(SicantikConfigError):
        SicantikApi("https://example.test/api", **kwargs)


def test_rate_limit_off_and_shared_limiter():
    assert SicantikApi("https://example.test/api", rate_limit=0).limiter is None
    assert SicantikApi("https://example.test/api", rate_limit=None).limiter is None
    from tools.rate_limiter import RateLimiter

    shared = RateLimiter(3)
    one = SicantikApi("https://a.test/api", limiter=shared)
    two = SicantikApi("https://b.test/api", limiter=shared, rate_limit=50)
    assert one.limiter is two.limiter is shared


def test_closed_client_refuses_to_work():
    api, adapter = canned(200, body=b'[{"jumlahPerizinan":16}]')
    with api:
        assert api.count_permit_types() == 16
    with pytest.raises(SicantikConfigError, match="closed"):
        api.count_permit_types()
    assert len(adapter.requests) == 1


def test_importing_tools_is_light():
    code = (
        "import sys, tools, tools.const, tools.sicantik_exceptions;"
        "assert 'requests' not in sys.modules and 'lxml' not in sys.modules;"
        "tools.SicantikApi; assert 'requests' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --------------------------------------------------------------------------
# Exceptions and helpers
# --------------------------------------------------------------------------


def test_exception_defaults_and_validation():
    err = SicantikRateLimited("slow down", retry_after=30)
    assert (err.failure_type, err.retryable, err.scope, err.retry_after) == (
        "rate_limited",
        True,
        "system",
        30,
    )
    assert SicantikDataError("x").scope == "record"
    assert SicantikTimeout("x").retryable is True
    assert isinstance(SicantikTimeout("x"), SicantikError)
    err = SicantikServerError("boom")
    err.attempts = 4
    assert str(err) == "boom (after 4 attempts)"
    with pytest.raises(ValueError):
        SicantikError("x", failure_type="nonsense")
    with pytest.raises(ValueError):
        SicantikError("x", scope="galaxy")


def test_scrub_removes_query_strings_and_object_addresses():
    text = (
        "HTTPSConnectionPool(host='x', port=443): Max retries exceeded with url: "
        "/backoffice/api/cekperizinan?no_izin=NTAz&format=json (Caused by "
        "<urllib3.connection.HTTPSConnection object at 0x7f00>: Failed)"
    )
    scrubbed = scrub(text, limit=500)
    assert "no_izin" not in scrubbed and "NTAz" not in scrubbed
    assert "object at" not in scrubbed


# --------------------------------------------------------------------------
# Canned answers the sandbox never gives
# --------------------------------------------------------------------------


def test_redirect_is_a_config_error_naming_only_the_target_host():
    location = "https://evil.example/backoffice/api/cekperizinan?no_izin=c2VjcmV0"
    api, adapter = canned(301, {"Location": location})
    with pytest.raises(SicantikConfigError) as info:
        api.get_permit_details("503/1/2020")
    message = str(info.value)
    assert "https://evil.example" in message
    assert "no_izin" not in message and "c2VjcmV0" not in message
    assert info.value.status == 301
    assert len(adapter.requests) == 1  # never followed, never retried
    request, kwargs = adapter.requests[0]
    assert kwargs["timeout"] == (5.0, 30.0)
    assert kwargs["stream"] is True


def test_request_shape_json_switches_and_base64_query():
    api, adapter = canned(404, body=b'{"error":"Tidak ada data.."}')
    assert api.get_permit_details("503/0940/XI/TDP/2025  ") is None
    request, _ = adapter.requests[0]
    assert request.url == (
        "https://sicantik.example/backoffice/api/cekperizinan"
        "?no_izin=NTAzLzA5NDAvWEkvVERQLzIwMjUgIA%3D%3D&format=json"
    )
    assert request.headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    "status, error, retried",
    [
        (401, SicantikConfigError, False),
        (403, SicantikConfigError, False),
        (400, SicantikBadRequest, False),
        (405, SicantikBadRequest, False),
        (501, SicantikServerError, False),
        (504, SicantikServerError, True),
    ],
)
def test_other_statuses(status, error, retried):
    api, adapter = canned(status, body=b"<html>no</html>", max_retries=2)
    with pytest.raises(error) as info:
        api.count_permit_types()
    assert info.value.status == status
    assert len(adapter.requests) == (3 if retried else 1)
    assert api.stats.retries == (2 if retried else 0)


def test_unsupported_content_encoding_is_not_retried():
    api, adapter = canned(200, {"Content-Encoding": "br"}, b"\x00\x01")
    with pytest.raises(Exception) as info:
        api.count_permit_types()
    assert info.value.failure_type == "bad_response"
    assert len(adapter.requests) == 1


def test_empty_number_raises_without_any_request():
    api, adapter = canned(200, body=b"[]")
    for empty in ("", "   ", None):
        with pytest.raises(SicantikDataError) as info:
            api.get_permit_details(empty)
        assert info.value.scope == "record"
    assert adapter.requests == []


@pytest.mark.parametrize("limit, offset", [(0, 0), (10, -1), ("10", 0), (True, 0)])
def test_page_arguments_are_checked_before_any_request(limit, offset):
    api, adapter = canned(200, body=b"[]")
    with pytest.raises(ValueError):
        api.list_issued_permits(limit, offset)
    with pytest.raises(ValueError):
        next(api.iter_issued_permits(limit, offset))
    assert adapter.requests == []


def test_requests_exceptions_are_wrapped_with_their_cause():
    api = SicantikApi(
        "http://127.0.0.1:9/backoffice/api", rate_limit=None, max_retries=0
    )

    class Exploding(BaseAdapter):
        def send(self, request, **kwargs):
            raise requests.exceptions.ReadTimeout("read timed out", request=request)

        def close(self):
            pass

    api._session.mount("http://", Exploding())
    with pytest.raises(SicantikTimeout) as info:
        api.count_permit_types()
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)
    assert api.stats.as_dict()["by_status"]["none"] == 1
