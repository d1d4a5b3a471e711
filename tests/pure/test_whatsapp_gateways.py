"""WhatsApp gateway clients against the gateway sandbox, over loopback HTTP.

The real ``requests`` session, timeouts and error mapping run; the sandbox
speaks each gateway's documented contract and records what it received, so
"sent once" and "never sent" are counted at the gateway, not guessed from
the client. Timeouts are produced by answers that hang longer than a short
read timeout: nothing sleeps to wait for anything.
"""

import logging
import socket
import threading
import time
import traceback

import pytest
import requests

from sandbox.gateways import GatewayServer
from tools.rate_limiter import RateLimiter
from tools.whatsapp_exceptions import (
    FAILURE_TYPES,
    SCOPE_MESSAGE,
    SCOPE_PROVIDER,
    WhatsappConfigError,
    WhatsappError,
    WhatsappInvalidNumber,
    WhatsappPermanentError,
    WhatsappRateLimited,
    WhatsappRetryableError,
    WhatsappUnknownOutcome,
)
from tools.whatsapp_gateways import (
    FonnteGateway,
    LogOnlyGateway,
    MetaCloudGateway,
    SendResult,
    WahaGateway,
    WebhookGateway,
    mask_phone,
)

TO = "+6281234567890"
DIGITS = "6281234567890"
TEXT = "Yth. Budi Ginting,\nizin IMB Anda berakhir pada 31-12-2025."
TEMPLATE = "izin_akan_berakhir"
PARAMS = ["Budi Ginting", "IMB", "503/IMB/2024", "31-12-2025", 7]
REFERENCE = "sicantik.notification:42"
PROVIDERS = ("meta", "fonnte", "waha", "webhook")
SHORT_READ = (1.0, 0.2)  # read timeout far below a hang


@pytest.fixture(scope="module")
def server():
    with GatewayServer() as srv:
        yield srv


@pytest.fixture
def gw(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def make(gw):
    """``make(provider, **overrides)``: a client of the sandbox's gateway."""
    clients = []

    def make(provider, **overrides):
        settings = {"timeout": (1.0, 3.0)}
        if provider == "meta":
            cls = MetaCloudGateway
            settings.update(
                token=gw.meta_token,
                phone_number_id=gw.meta_phone_number_id,
                template=TEMPLATE,
                base_url=gw.url,
            )
        elif provider == "fonnte":
            cls = FonnteGateway
            settings.update(token=gw.fonnte_token, base_url=gw.url)
        elif provider == "waha":
            cls = WahaGateway
            settings.update(base_url=gw.url, api_key=gw.waha_api_key)
        else:
            cls = WebhookGateway
            settings.update(url=gw.webhook_url, headers=gw.webhook_headers)
        settings.update(overrides)
        client = cls(**settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def send(client, to=TO):
    return client.send(to, TEXT, params=PARAMS, reference=REFERENCE)


def failure(client, to=TO):
    with pytest.raises(WhatsappError) as info:
        send(client, to)
    return info.value


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------
# Success and the request each gateway receives
# --------------------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_success(gw, make, provider):
    result = send(make(provider))
    [message] = gw.messages(provider)
    assert isinstance(result, SendResult)
    assert result.message_id == message.message_id
    assert message.to == DIGITS
    assert result.raw_status


def test_meta_template_request_matches_the_contract(gw, make):
    send(make("meta"))
    [request] = gw.requests("meta")
    assert request.method == "POST"
    assert request.path == f"/v21.0/{gw.meta_phone_number_id}/messages"
    assert request.headers["authorization"] == f"Bearer {gw.meta_token}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("sicantik_connector/")
    assert request.fields == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": DIGITS,
        "type": "template",
        "template": {
            "name": TEMPLATE,
            "language": {"code": "id"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": str(p)} for p in PARAMS],
                }
            ],
        },
        "biz_opaque_callback_data": REFERENCE,
    }
    [message] = gw.messages("meta")
    assert (message.template, message.params) == (TEMPLATE, tuple(map(str, PARAMS)))
    assert message.message_id.startswith("wamid.")


def test_meta_template_per_send_and_language(gw, make):
    client = make("meta", template=None, language="en_US")
    client.send(TO, TEXT, template="other_template", params=["x"])
    body = gw.requests("meta")[0].fields
    assert body["template"]["name"] == "other_template"
    assert body["template"]["language"] == {"code": "en_US"}
    assert "biz_opaque_callback_data" not in body


def test_meta_without_template_sends_text(gw, make):
    make("meta", template=None).send(TO, TEXT)
    body = gw.requests("meta")[0].fields
    assert body["type"] == "text"
    assert body["text"] == {"preview_url": False, "body": TEXT}
    assert gw.messages("meta")[0].text == TEXT


def test_meta_template_parameters_are_flattened(gw, make):
    # Meta refuses empty parameters and line breaks inside one (the sandbox
    # answers 132018 like Meta does): the client sends what Meta accepts.
    make("meta").send(TO, TEXT, params=["Budi\nGinting", "", "a\t  b      c"])
    assert gw.messages("meta")[0].params == ("Budi Ginting", "-", "a b c")


@pytest.mark.parametrize(
    "version, path", [("v19.0", "/v19.0/"), ("20", "/v20.0/"), ("v22", "/v22.0/")]
)
def test_meta_graph_api_version_is_configurable(gw, make, version, path):
    send(make("meta", api_version=version))
    assert gw.requests("meta")[0].path.startswith(path)


def test_fonnte_request_matches_the_contract(gw, make):
    send(make("fonnte"))
    [request] = gw.requests("fonnte")
    assert (request.method, request.path) == ("POST", "/send")
    assert request.headers["authorization"] == gw.fonnte_token  # no "Bearer"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.fields == {"target": DIGITS, "message": TEXT, "countryCode": "0"}
    assert gw.messages("fonnte")[0].text == TEXT


def test_waha_checks_the_number_then_sends(gw, make):
    result = send(make("waha"))
    check, post = gw.requests("waha")
    assert (check.method, check.path) == ("GET", "/api/contacts/check-exists")
    assert check.query == {"phone": DIGITS, "session": "default"}
    assert (post.method, post.path) == ("POST", "/api/sendText")
    for request in (check, post):
        assert request.headers["x-api-key"] == gw.waha_api_key
    assert post.fields == {
        "session": "default",
        "chatId": f"{DIGITS}@c.us",
        "text": TEXT,
    }
    assert result.message_id.startswith(f"true_{DIGITS}@c.us_")


def test_waha_without_number_check(gw, make):
    send(make("waha", check_number=False))
    assert [r.path for r in gw.requests("waha")] == ["/api/sendText"]


@pytest.mark.parametrize(
    "engine, prefix", [("WEBJS", "true_"), ("GOWS", "true_"), ("NOWEB", "3EB0")]
)
def test_waha_message_id_of_each_engine(gw, make, engine, prefix):
    gw.configure(waha_engine=engine)
    result = send(make("waha"))
    assert result.message_id == gw.messages("waha")[0].message_id
    assert result.message_id.startswith(prefix)


def test_webhook_request_matches_the_contract(gw, make):
    send(make("webhook"))
    [request] = gw.requests("webhook")
    assert (request.method, request.path) == ("POST", gw.webhook_path)
    for name, value in gw.webhook_headers.items():
        assert request.headers[name.lower()] == value
    assert request.headers["idempotency-key"] == REFERENCE
    assert request.headers["content-type"] == "application/json"
    assert request.fields == {
        "to": TO,
        "phone": DIGITS,
        "text": TEXT,
        "template": None,
        "params": [str(p) for p in PARAMS],
        "reference": REFERENCE,
    }


def test_webhook_accepts_any_2xx_body(gw, make):
    gw.queue("webhook", {"status": 202, "body": "OK"})
    assert send(make("webhook")) == SendResult(None, "accepted")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_redirects_are_refused_not_followed(gw, make, provider):
    queue = "waha-check" if provider == "waha" else provider
    gw.queue(queue, {"status": 302, "headers": {"Location": gw.url + "/elsewhere"}})
    err = failure(make(provider))
    assert isinstance(err, WhatsappConfigError)
    assert "redirect" in str(err)
    assert len(gw.requests(provider)) == 1
    assert not gw.requests("")  # /elsewhere never asked


def test_sessions_verify_tls_and_never_retry(make):
    client = make("fonnte")
    assert client._session.verify is True
    for adapter in client._session.adapters.values():
        assert adapter.max_retries.total == 0


# --------------------------------------------------------------------------
# Failures inside an HTTP 200 answer
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reason, error_class",
    [
        ("token invalid", WhatsappConfigError),
        ("devices must belong to an account", WhatsappConfigError),
        ("insufficient quota", WhatsappRetryableError),
        ("device disconnected", WhatsappRetryableError),
        ("target invalid", WhatsappInvalidNumber),
        ("input invalid", WhatsappPermanentError),
        ("url unreachable", WhatsappPermanentError),
    ],
)
def test_fonnte_status_false_is_a_failure(gw, make, reason, error_class):
    gw.queue("fonnte", {"refuse": True, "reason": reason})
    err = failure(make("fonnte"))
    assert type(err) is error_class
    assert (err.status, err.error_code) == (200, reason)
    assert reason in str(err)
    assert not gw.messages()


def test_fonnte_capital_status_false_is_a_failure(gw, make):
    gw.queue("fonnte", {"body": {"Status": False, "reason": "insufficient quota"}})
    err = failure(make("fonnte"))
    assert err.failure_type == "retryable"
    assert err.scope == SCOPE_PROVIDER


def test_fonnte_wrong_token(gw, make):
    err = failure(make("fonnte", token="not-the-device-token"))
    assert err.failure_type == "config"
    assert "token invalid" in str(err)
    assert not gw.messages()


def test_webhook_refusal_in_a_200_body(gw, make):
    gw.queue("webhook", {"refuse": True, "reason": "template not allowed"})
    err = failure(make("webhook"))
    assert err.failure_type == "permanent"
    assert "template not allowed" in str(err)
    gw.queue("webhook", {"body": {"ok": False, "error": "busy", "retryable": True}})
    assert failure(make("webhook")).failure_type == "retryable"
    assert not gw.messages()


@pytest.mark.parametrize("provider", ("meta", "fonnte", "waha"))
def test_unreadable_success_is_an_unknown_outcome(gw, make, provider):
    gw.queue(provider, {"body": "<html><body>Maintenance</body></html>"})
    err = failure(make(provider))
    assert isinstance(err, WhatsappUnknownOutcome)
    assert err.retryable is False


# --------------------------------------------------------------------------
# Rate limits and server errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", [7, None])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_429(gw, make, provider, retry_after):
    gw.queue(provider, {"status": 429, "retry_after": retry_after})
    err = failure(make(provider))
    assert isinstance(err, WhatsappRateLimited)
    assert (err.failure_type, err.retryable, err.status) == ("rate_limited", True, 429)
    assert err.retry_after == (None if retry_after is None else 7.0)
    assert not gw.messages()
    assert len(gw.requests(provider)) == (2 if provider == "waha" else 1)


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_5xx_is_retryable(gw, make, provider, status):
    gw.queue(provider, str(status))
    err = failure(make(provider))
    assert isinstance(err, WhatsappRetryableError)
    assert err.retryable is True
    assert err.scope == SCOPE_PROVIDER
    assert not gw.messages()


def test_503_retry_after_is_kept(gw, make):
    gw.queue("fonnte", {"status": 503, "retry_after": 30})
    assert failure(make("fonnte")).retry_after == 30.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_504_from_a_proxy_is_an_unknown_outcome(gw, make, provider):
    # a proxy that gave up waiting cannot say whether the gateway sent it
    gw.queue(provider, {"status": 504, "body": "<html>504 Gateway Time-out</html>"})
    err = failure(make(provider))
    assert isinstance(err, WhatsappUnknownOutcome)
    assert err.retryable is False


# --------------------------------------------------------------------------
# Lost answers: timeouts and dropped connections
# --------------------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_read_timeout_is_an_unknown_outcome_and_not_resent(gw, make, provider):
    gw.queue(provider, {"hang": 5})
    started = time.monotonic()
    err = failure(make(provider, timeout=SHORT_READ))
    assert time.monotonic() - started < 2
    assert isinstance(err, WhatsappUnknownOutcome)
    assert (err.failure_type, err.retryable) == ("unknown", False)
    assert "may have been sent" in str(err)
    # the gateway did take the message, exactly once: a resend would be a
    # duplicate, which is why the client reports "unknown"
    assert len(gw.messages(provider)) == 1
    sends = [r for r in gw.requests(provider) if r.method == "POST"]
    assert len(sends) == 1


def test_timeout_of_the_waha_number_check_is_retryable(gw, make):
    gw.queue("waha-check", {"hang": 5})
    err = failure(make("waha", timeout=SHORT_READ))
    assert isinstance(err, WhatsappRetryableError)  # nothing was sent yet
    assert [r.path for r in gw.requests("waha")] == ["/api/contacts/check-exists"]
    assert not gw.messages()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_closed_without_answer(gw, make, provider):
    client = make(provider)
    gw.queue(provider, "close", {"close": True, "deliver": True})
    for expected_messages in (0, 1):
        err = failure(client)
        assert isinstance(err, WhatsappUnknownOutcome)
        assert err.retryable is False
        assert len(gw.messages(provider)) == expected_messages


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_refused_is_retryable(make, provider):
    url = f"http://127.0.0.1:{free_port()}"
    key = "url" if provider == "webhook" else "base_url"
    err = failure(make(provider, **{key: url}))
    assert isinstance(err, WhatsappRetryableError)
    assert "cannot connect" in str(err)


# --------------------------------------------------------------------------
# Invalid numbers
# --------------------------------------------------------------------------
def test_meta_invalid_number(gw, make):
    gw.queue("meta", "invalid_number")
    err = failure(make("meta"))
    assert isinstance(err, WhatsappInvalidNumber)
    assert (err.error_code, err.retryable) == ("131026", False)
    assert err.scope == SCOPE_MESSAGE


@pytest.mark.parametrize("provider", PROVIDERS)
def test_number_without_whatsapp(gw, make, provider):
    gw.configure(invalid_numbers=[DIGITS])
    err = failure(make(provider))
    assert isinstance(err, WhatsappInvalidNumber)
    assert err.failure_type == "invalid_number"
    assert not gw.messages()
    assert send(make(provider), to="+6281398765432")  # others still go


def test_waha_never_sends_to_a_number_without_whatsapp(gw, make):
    gw.configure(invalid_numbers=[DIGITS])
    failure(make("waha"))
    assert [r.path for r in gw.requests("waha")] == ["/api/contacts/check-exists"]


@pytest.mark.parametrize("provider", ("log", *PROVIDERS))
@pytest.mark.parametrize("to", ["0812 3456 7890", "", None, "+62 812", "6281x"])
def test_a_number_not_in_e164_is_refused_before_any_request(gw, make, provider, to):
    client = LogOnlyGateway() if provider == "log" else make(provider)
    with pytest.raises(WhatsappInvalidNumber):
        client.send(to, TEXT)
    assert not gw.requests()


# --------------------------------------------------------------------------
# Meta error codes and configuration checks of each gateway
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code, status, failure_type, scope",
    [
        (130429, 400, "rate_limited", SCOPE_PROVIDER),  # throughput
        (131056, 400, "rate_limited", SCOPE_MESSAGE),  # pair rate limit
        (4, 400, "rate_limited", SCOPE_PROVIDER),
        (80007, 400, "rate_limited", SCOPE_PROVIDER),
        (131000, 500, "retryable", SCOPE_PROVIDER),
        (131016, 503, "retryable", SCOPE_PROVIDER),
        (133004, 503, "retryable", SCOPE_PROVIDER),
        (190, 401, "config", SCOPE_PROVIDER),  # token expired
        (132001, 404, "config", SCOPE_PROVIDER),  # template does not exist
        (132015, 400, "config", SCOPE_PROVIDER),  # template paused
        (131031, 400, "config", SCOPE_PROVIDER),  # account locked
        (131026, 400, "invalid_number", SCOPE_MESSAGE),
        (131047, 400, "permanent", SCOPE_MESSAGE),  # 24-hour window
        (100, 400, "permanent", SCOPE_MESSAGE),
        (131051, 400, "permanent", SCOPE_MESSAGE),
    ],
)
def test_meta_error_codes(gw, make, code, status, failure_type, scope):
    gw.queue("meta", {"code": code, "status": status, "retry_after": 3})
    err = failure(make("meta"))
    assert (err.failure_type, err.scope) == (failure_type, scope)
    assert (err.error_code, err.status) == (str(code), status)
    assert f"error {code}" in str(err)
    assert err.retry_after == (3.0 if failure_type == "rate_limited" else None)


def test_meta_131047_says_a_template_is_needed(gw, make):
    gw.queue("meta", {"code": 131047})
    assert "approved templates" in str(failure(make("meta", template=None)))


def test_meta_wrong_token_and_wrong_phone_number_id(gw, make):
    err = failure(make("meta", token="EAAG-expired"))
    assert (err.failure_type, err.error_code) == ("config", "190")
    err = failure(make("meta", phone_number_id="999"))
    assert (err.failure_type, err.error_code) == ("config", "100")
    assert not gw.messages()


def test_meta_unknown_template_and_parameter_count(gw, make):
    gw.configure(meta_templates={TEMPLATE: len(PARAMS)})
    assert send(make("meta")).message_id
    err = failure(make("meta", template="no_such_template"))
    assert (err.failure_type, err.error_code) == ("config", "132001")
    with pytest.raises(WhatsappConfigError) as info:
        make("meta").send(TO, TEXT, params=PARAMS[:3])
    assert info.value.error_code == "132000"
    assert len(gw.messages()) == 1


def test_waha_session_not_working(gw, make):
    gw.configure(waha_session_status="SCAN_QR_CODE")
    err = failure(make("waha"))
    assert (err.failure_type, err.scope, err.status) == ("retryable", "provider", 422)
    assert not gw.messages()
    err = failure(make("waha", check_number=False))
    assert err.failure_type == "retryable"
    assert not gw.messages()


def test_waha_wrong_key_and_unknown_session(gw, make):
    assert failure(make("waha", api_key="waha-wrong")).failure_type == "config"
    err = failure(make("waha", session="kantor"))
    assert (err.failure_type, err.status) == ("config", 404)
    assert not gw.messages()


def test_webhook_wrong_header_and_wrong_url(gw, make):
    err = failure(make("webhook", headers={"Authorization": "Bearer wrong"}))
    assert (err.failure_type, err.status) == ("config", 401)
    err = failure(make("webhook", url=gw.url + "/hooks/nothing-here"))
    assert (err.failure_type, err.status) == ("config", 404)
    assert not gw.messages()


@pytest.mark.parametrize(
    "build",
    [
        lambda: MetaCloudGateway(None, "123"),
        lambda: MetaCloudGateway("token", ""),
        lambda: MetaCloudGateway("token", "12ab"),
        lambda: MetaCloudGateway("token", "123", api_version="latest"),
        lambda: FonnteGateway("  "),
        lambda: FonnteGateway("token", base_url="ftp://api.fonnte.com"),
        lambda: FonnteGateway("token", timeout=(0, 10)),
        lambda: FonnteGateway("token", timeout="soon"),
        lambda: WahaGateway(None),
        lambda: WahaGateway("http://waha:3000#x"),
        lambda: WahaGateway("http://waha:3000/?api_key=x"),
        lambda: WebhookGateway("https://user:pw@hooks.example/x"),
        lambda: WebhookGateway("https://hooks.example/x", {"Bad Header": "x"}),
        lambda: WebhookGateway("https://hooks.example/x", {"X-Key": "a\r\nb"}),
        lambda: WebhookGateway("https://hooks.example/x", ["Authorization"]),
        lambda: WebhookGateway("https://hooks.example:99999/x"),
    ],
)
def test_configuration_errors(build):
    with pytest.raises(WhatsappConfigError) as info:
        build()
    assert info.value.failure_type == "config"
    assert "pw" not in str(info.value)


def test_empty_text_is_refused(make):
    with pytest.raises(WhatsappPermanentError):
        make("fonnte").send(TO, "  ")


# --------------------------------------------------------------------------
# Secrets never reach a message, a traceback or a log line
# --------------------------------------------------------------------------
def _secret_of(gw, provider):
    return {
        "meta": gw.meta_token,
        "fonnte": gw.fonnte_token,
        "waha": gw.waha_api_key,
        "webhook": gw.webhook_headers["Authorization"],
    }[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_secrets_are_absent_from_errors_and_logs(gw, make, caplog, provider):
    caplog.set_level(logging.DEBUG)  # urllib3's request lines included
    secret = _secret_of(gw, provider)
    echo = f"credential {secret} ({secret.split()[-1]}) is not allowed here"
    # a gateway that repeats our credential in its error answers
    echoed = {"error": {"message": echo, "code": 100}, "reason": echo, "message": echo}
    refusal = {"ok": False, "error": echo, "reason": echo, "status": False}
    gw.queue(
        provider,
        {"status": 400, "body": echoed},
        # a refusal in a 200 body where the gateway has those
        {"body": refusal} if provider in ("fonnte", "webhook") else "500",
        {"hang": 5},
        "close",
        "429",
    )
    client = make(provider, timeout=SHORT_READ)
    errors = [failure(client) for _ in range(5)]
    send(client)  # a success logs too
    wrong = f"{secret[:-4]}XXXX"
    key = {"meta": "token", "fonnte": "token", "waha": "api_key"}.get(provider)
    overrides = {key: wrong} if key else {"headers": {"Authorization": wrong}}
    errors.append(failure(make(provider, **overrides)))
    assert {e.failure_type for e in errors} >= {"unknown", "rate_limited"}
    for value in (secret, wrong, secret.split()[-1]):
        for err in errors:
            text = "".join(traceback.format_exception(err))
            assert value not in f"{err} {err!r} {err.args} {text}"
        assert value not in caplog.text
    assert "***" in str(errors[0])  # the echo was kept, without the secret


def test_a_secret_webhook_url_is_never_repeated(caplog):
    caplog.set_level(logging.DEBUG)
    token = "T0k3nInThePath9f2c81"
    with GatewayServer(webhook_path=f"/hooks/{token}") as srv:
        client = WebhookGateway(
            srv.webhook_url + "?key=QuerySecret77",
            headers=srv.webhook_headers,
            timeout=SHORT_READ,
        )
        srv.queue("webhook", {"status": 400, "body": {"error": f"no {token}"}})
        errors = [failure(client)]
        srv.queue("webhook", "close", {"hang": 5})
        errors += [failure(client), failure(client)]
    errors.append(failure(client))  # the server has stopped: refused
    client.close()
    assert [e.failure_type for e in errors] == [
        "permanent",
        "unknown",
        "unknown",
        "retryable",
    ]
    for err in errors:
        text = "".join(traceback.format_exception(err))
        for value in (token, "QuerySecret77"):
            assert value not in f"{err} {err!r} {text}"
    # urllib3 logs request paths at DEBUG level, out of our hands (secrets
    # belong in headers); the addon's own lines never show the URL
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("tools")]
    assert ours and not any(token in line for line in ours)


# --------------------------------------------------------------------------
# Logging, rate limiting, log-only gateway
# --------------------------------------------------------------------------
def test_log_lines_mask_the_number(gw, make, caplog):
    caplog.set_level(logging.INFO, logger="tools")
    client = make("fonnte")
    send(client)
    gw.queue("fonnte", "503")
    failure(client)
    info, warning = (r for r in caplog.records if r.name.startswith("tools"))
    assert (info.levelno, warning.levelno) == (logging.INFO, logging.WARNING)
    assert mask_phone(TO) == "+62812*****890"
    for record in (info, warning):
        assert mask_phone(TO) in record.getMessage()
        assert TO not in record.getMessage()
        assert "fonnte" in record.getMessage()
    assert "[retryable]" in warning.getMessage()


def test_provider_rate_limiter_paces_each_send(gw, make):
    limiter = RateLimiter(1000.0)
    client = make("webhook", limiter=limiter)
    for _ in range(3):
        send(client)
    assert limiter.released == 3


def test_log_only_gateway_sends_nothing(gw, caplog):
    caplog.set_level(logging.INFO)
    with LogOnlyGateway() as client:
        result = client.send(TO, TEXT)
    assert result.message_id.startswith("log-")
    assert result.raw_status == "logged"
    assert TEXT in caplog.text
    assert not gw.requests()


def test_registry_and_failure_types():
    classes = (
        LogOnlyGateway,
        MetaCloudGateway,
        FonnteGateway,
        WahaGateway,
        WebhookGateway,
    )
    # each client names its provider type, one type per client
    assert sorted(cls.provider for cls in classes) == sorted(("log", *PROVIDERS))
    assert set(FAILURE_TYPES) == {
        "retryable",
        "rate_limited",
        "permanent",
        "invalid_number",
        "config",
        "unknown",
    }
    retryable = {
        cls.default_failure_type
        for cls in (WhatsappRetryableError, WhatsappRateLimited)
    }
    assert retryable == {"retryable", "rate_limited"}
    assert WhatsappUnknownOutcome("x").retryable is False


# --------------------------------------------------------------------------
# The sandbox itself
# --------------------------------------------------------------------------
def test_sandbox_starts_fast_and_stop_ends_a_hang():
    started = time.monotonic()
    srv = GatewayServer().start()
    assert time.monotonic() - started < 0.5
    srv.queue("webhook", {"hang": 60})
    client = WebhookGateway(srv.webhook_url, srv.webhook_headers, timeout=SHORT_READ)
    failure(client)
    client.close()
    stopping = time.monotonic()
    srv.stop()
    assert time.monotonic() - stopping < 1.0
    assert not srv.running


def test_sandbox_without_credentials():
    with GatewayServer(waha_api_key=False, webhook_headers={}) as srv:
        with WahaGateway(srv.url) as waha, WebhookGateway(srv.webhook_url) as hook:
            assert send(waha).message_id
            assert send(hook).message_id
        assert "x-api-key" not in srv.requests("waha")[0].headers
        assert len(srv.messages()) == 2


def test_sandbox_refuses_unknown_answers(gw):
    with pytest.raises(ValueError):
        gw.queue("meta", "teapot")
    with pytest.raises(ValueError):
        gw.queue("meta", "refuse")  # Meta never fails inside a 200
    with pytest.raises(ValueError):
        gw.queue("telegram", "ok")
    with pytest.raises(ValueError):
        gw.queue("fonnte", {"status": 500, "colour": "red"})
    with pytest.raises(ValueError):
        gw.configure(waha_engine="SELENIUM")
    gw.queue("fonnte", "500", "ok")
    assert len(gw.pending("fonnte")) == 2


def test_sandbox_is_thread_safe(gw, make):
    def worker():
        client = make("webhook")
        for _ in range(5):
            send(client)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = gw.messages("webhook")
    assert len(messages) == 40
    assert len({m.message_id for m in messages}) == 40
    assert len(gw.requests("webhook")) == 40


def test_sandbox_fonnte_bulk_form_and_multipart(gw):
    headers = {"Authorization": gw.fonnte_token}
    answer = requests.post(
        gw.url + "/send",
        data={"target": "081234567890,081345678901|Budi", "message": "hi"},
        headers=headers,
        timeout=5,
    ).json()
    assert answer["status"] is True
    assert answer["target"] == ["6281234567890", "6281345678901"]
    files = {"target": (None, "6281234567890"), "message": (None, "halo")}
    answer = requests.post(gw.url + "/send", files=files, headers=headers, timeout=5)
    assert answer.json()["status"] is True
    assert [m.to for m in gw.messages("fonnte")] == [
        "6281234567890",
        "6281345678901",
        "6281234567890",
    ]
