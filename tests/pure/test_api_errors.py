"""The error base both clients' exceptions derive from (no network)."""

import pytest

from tools.api_errors import ApiError
from tools.sicantik_exceptions import SicantikError, SicantikRateLimited
from tools.whatsapp_exceptions import WhatsappError, WhatsappRateLimited


def test_both_client_families_share_the_error_base():
    sicantik = SicantikRateLimited("slow down", retry_after=30, status=429)
    whatsapp = WhatsappRateLimited("slow down", retry_after=30, status=429)
    for err in (sicantik, whatsapp):
        assert isinstance(err, ApiError)
        assert (err.failure_type, err.retryable, err.retry_after, err.status) == (
            "rate_limited",
            True,
            30,
            429,
        )
        assert str(err) == err.message == "slow down"
    assert (sicantik.scope, whatsapp.scope) == ("system", "provider")
    # each family checks values against its own vocabulary
    with pytest.raises(ValueError):
        SicantikError("x", failure_type="unknown")  # a WhatsApp failure type
    with pytest.raises(ValueError):
        WhatsappError("x", scope="record")  # a SICANTIK scope


def test_a_family_gets_validation_defaults_and_repr_from_the_base():
    class DemoError(ApiError):
        failure_types = ("flaky", "broken")
        scopes = ("one", "all")
        default_failure_type = "broken"
        default_scope = "one"

        def _default_retryable(self, failure_type):
            return failure_type == "flaky"

    err = DemoError("boom")
    assert (err.failure_type, err.scope, err.retryable) == ("broken", "one", False)
    assert (err.retry_after, err.status) == (None, None)
    assert DemoError("x", failure_type="flaky").retryable is True
    assert DemoError("x", failure_type="flaky", retryable=False).retryable is False
    assert repr(err) == (
        "DemoError('boom', failure_type='broken', retryable=False, "
        "scope='one', retry_after=None)"
    )
    with pytest.raises(ValueError):
        DemoError("x", failure_type="other")
    with pytest.raises(ValueError):
        DemoError("x", scope="galaxy")
    with pytest.raises(ValueError):
        ApiError("x")  # the base itself has no vocabulary
