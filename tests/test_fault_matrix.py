"""The fault matrix: every way the SICANTIK server misbehaves, met by the jobs.

Each case breaks the sandbox one way (over real loopback HTTP) while the real
scheduled job runs through the cron machinery, then checks that the job
wrote a sync log row with a reason staff can act on, kept the stored data
where the answer was bad, left its schedule alive, and that the next run
completes. The observed outcomes make the table of README.md's "Faults and
what happens": ``SICANTIK_WRITE_FAULT_TABLE=1`` writes it there; otherwise a
test fails when the README's table is not the one the cases produce.
"""

import os
import socket
import time
import unicodedata
from datetime import date
from pathlib import Path
from typing import NamedTuple
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.sicantik_config import SicantikConfig
from ..sandbox.data import ZERO_DATE, b64
from ..sandbox.faults import EXTRA_ROWS_FACTOR, ZWSP, alter_payload
from ..tools.const import JUNK_NAMES
from ..tools.storable import BIDI_CONTROLS, INVISIBLE, NAME_MAX, TEXT_MAX
from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"
CRONS = {"permits": PERMIT_CRON, "expiry": EXPIRY_CRON}
JOB_LABELS = {"permits": "permit list", "expiry": "expiry dates"}
README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"
# One fault per attempt: the first try and the client's three retries.
ATTEMPTS = 4
# The connector of the slow cases: 1 s to connect, 1 s per read, and so a
# 3 s deadline per attempt (connect + 2 x read) for the whole body.
SLOW_TIMEOUT = 1
SLOW_DEADLINE = SLOW_TIMEOUT + 2 * SLOW_TIMEOUT
# A generous bound on a run whose every attempt meets a trickling body.
TRICKLE_BOUND = 4 * SLOW_DEADLINE * ATTEMPTS
PAGES_LOGGER = "odoo.addons.sicantik_connector.tools.sicantik_pages"
# Served field -> stored field and its cap, in a cekperizinan answer.
DETAIL_TEXTS = (
    ("n_perusahaan", "company_name", NAME_MAX),
    ("a_pemohon", "applicant_address", TEXT_MAX),
    ("a_perusahaan", "company_address", TEXT_MAX),
)
# What a permit holds that a sync may never lose.
KEPT_FIELDS = (
    "no_surat",
    "applicant_name",
    "permit_type_id",
    "expiry_date",
    "expiry_unlimited",
    "issue_date",
    "received_date",
    "applicant_address",
    "applicant_phone",
    "company_name",
    "npwp",
    "company_address",
)


class Case(NamedTuple):
    name: str
    job: str  # "permits" or "expiry"
    did: str  # what the sandbox did, for the table
    state: str  # the state the log row that met the fault ends in
    failure: str | None = None  # its failure type
    faults: tuple = ()  # queued, one per request
    knobs: dict | None = None  # sandbox.configure(...) while the fault lasts
    special: str | None = None  # extra set-up and checks (``_special_*``)


def every_attempt(fault):
    return (fault,) * ATTEMPTS


def stored_form(text, cap):
    """What the connector promises to store of a served text: control
    characters (NUL included) and bidirectional formatting removed, NFC, runs
    of white space folded to one space, cut to ``cap`` characters."""
    kept = "".join(
        c
        for c in text
        if unicodedata.category(c) != "Cc"
        and c not in BIDI_CONTROLS
        and c not in INVISIBLE
    )
    return " ".join(unicodedata.normalize("NFC", kept).split())[:cap].rstrip()


PERMIT_CASES = (
    Case(
        "timeout",
        "permits",
        "answers after 2 s; the connector waits 1 s",
        "partial",
        "timeout",
        knobs={"latency": 2.0},
        special="slow",
    ),
    Case(
        "connection refused",
        "permits",
        "nothing listens on the port",
        "partial",
        "connection",
        special="refused",
    ),
    Case(
        "HTTP 500",
        "permits",
        "500 with an empty body (a PHP/SQL error)",
        "partial",
        "server",
        every_attempt(500),
    ),
    Case(
        "HTTP 502",
        "permits",
        "502 page of a proxy",
        "partial",
        "server",
        every_attempt(502),
    ),
    Case(
        "HTTP 503 with Retry-After",
        "permits",
        "503 with Retry-After: 1",
        "partial",
        "server",
        every_attempt(503),
        special="retry_after",
    ),
    Case(
        "HTTP 429 with Retry-After",
        "permits",
        "429 with Retry-After: 1",
        "partial",
        "rate_limited",
        every_attempt(429),
        special="retry_after",
    ),
    Case(
        "HTTP 429 without Retry-After",
        "permits",
        "429 and no hint when to come back",
        "partial",
        "rate_limited",
        every_attempt("429-no-retry-after"),
    ),
    Case(
        "hanging server",
        "permits",
        "accepts the request and never answers",
        "partial",
        "timeout",
        every_attempt("hang"),
        {"hang_seconds": 3.0},
        "slow",
    ),
    Case(
        "connection reset",
        "permits",
        "resets the connection instead of answering",
        "partial",
        "connection",
        every_attempt("reset"),
    ),
    Case(
        "truncated body",
        "permits",
        "sends half the body it announced",
        "partial",
        "bad_response",
        every_attempt("truncate"),
    ),
    Case(
        "empty body",
        "permits",
        "200 with an empty body",
        "partial",
        "bad_response",
        every_attempt("empty"),
    ),
    Case(
        "HTML error page",
        "permits",
        "200 with PHP's database error page",
        "partial",
        "bad_response",
        every_attempt("html"),
    ),
    Case(
        "malformed JSON",
        "permits",
        "JSON with its last character cut",
        "partial",
        "bad_response",
        every_attempt("malformed"),
    ),
    Case(
        "malformed XML",
        "permits",
        "XML (whatever was asked) with the root element left open",
        "partial",
        "bad_response",
        every_attempt("malformed-xml"),
    ),
    Case(
        "XML with HTML entities",
        "permits",
        "the whole pass in XML (whatever was asked), accents as &eacute;",
        "done",
        special="entities",
    ),
    Case(
        "XXE payload",
        "permits",
        "XML declaring an external entity file:///etc/passwd used in a name",
        "partial",
        "bad_response",
        ("xxe",),
        special="xxe",
    ),
    Case(
        "entity-expansion bomb",
        "permits",
        "XML declaring a billion-laughs entity",
        "partial",
        "bad_response",
        ("bomb",),
    ),
    Case(
        "oversized response",
        "permits",
        "a 64 MiB answer (the cap is 8 MiB)",
        "partial",
        "too_large",
        ("oversized",),
    ),
    Case(
        "JSON object instead of a list",
        "permits",
        'the rows as an object {"1": row, "2": row, ...}',
        "partial",
        "bad_response",
        ("json-object",),
    ),
    Case(
        "JSON lists instead of objects",
        "permits",
        "every row a list of values",
        "partial",
        "bad_response",
        ("json-list",),
    ),
    Case(
        "missing fields",
        "permits",
        "rows with pendaftaran_id only",
        "done",
        faults=("missing-fields",),
    ),
    Case(
        "duplicate registration ids",
        "permits",
        "every second row carries the previous row's pendaftaran_id",
        "done",
        faults=("duplicate-ids",),
        special="duplicates",
    ),
    Case(
        "page repeating the previous page",
        "permits",
        "serves page 1 again for the next offset, at a run boundary",
        "partial",
        "bad_response",
        ("repeat-page",),
    ),
    Case(
        "NUL bytes",
        "permits",
        "a NUL (\\u0000 in the JSON) inside every applicant name of the page",
        "done",
        faults=("nul-bytes",),
        special="hostile",
    ),
    Case(
        "over-long values",
        "permits",
        "applicant names of 5,000 characters, every second one of 3,000 "
        "multi-byte characters",
        "done",
        faults=("long-values",),
        special="hostile",
    ),
    Case(
        "control and bidi characters",
        "permits",
        "every name in a right-to-left override (U+202E) with an ESC and a "
        "zero-width space inside, accents decomposed, then e + U+0301",
        "done",
        faults=("control-chars",),
        special="hostile",
    ),
    Case(
        "page larger than asked",
        "permits",
        "3 x the rows the limit asked for (the limit ignored)",
        "done",
        faults=("extra-rows",),
        special="extra_rows",
    ),
    Case(
        "page of one registration id",
        "permits",
        "all 50 rows of the page carry the first row's pendaftaran_id",
        "done",
        faults=("same-id",),
        special="one_id",
    ),
    Case(
        "trickling body",
        "permits",
        "headers at once, then one byte of the body every 0.4 s; the "
        "connector waits 1 s per read",
        "partial",
        "timeout",
        every_attempt("trickle"),
        special="trickle",
    ),
)

EXPIRY_CASES = (
    Case(
        "timeout",
        "expiry",
        "answers after 2 s; the connector waits 1 s",
        "failed",
        "timeout",
        knobs={"latency": 2.0},
        special="slow",
    ),
    Case(
        "connection refused",
        "expiry",
        "nothing listens on the port",
        "failed",
        "connection",
        special="refused",
    ),
    Case(
        "HTTP 500",
        "expiry",
        "500 with an empty body (a PHP/SQL error)",
        "failed",
        "server",
        every_attempt(500),
    ),
    Case(
        "HTTP 429 with Retry-After",
        "expiry",
        "429 with Retry-After: 1",
        "failed",
        "rate_limited",
        every_attempt(429),
        special="retry_after",
    ),
    Case(
        "truncated body",
        "expiry",
        "sends half the body it announced",
        "partial",
        "data",
        every_attempt("truncate"),
    ),
    Case(
        "empty body",
        "expiry",
        "200 with an empty body",
        "partial",
        "data",
        every_attempt("empty"),
    ),
    Case(
        "HTML error page",
        "expiry",
        "200 with PHP's database error page",
        "partial",
        "data",
        every_attempt("html"),
    ),
    Case(
        "malformed XML",
        "expiry",
        "XML (whatever was asked) with the root element left open",
        "partial",
        "data",
        every_attempt("malformed-xml"),
    ),
    Case(
        "XML with HTML entities",
        "expiry",
        "XML with the company name's curly quotes as &lsquo;/&rsquo;",
        "done",
        faults=("xml",),
        special="entities",
    ),
    Case(
        "XXE payload",
        "expiry",
        "XML declaring an external entity file:///etc/passwd used in a name",
        "partial",
        "data",
        ("xxe",),
        special="xxe",
    ),
    Case(
        "entity-expansion bomb",
        "expiry",
        "XML declaring a billion-laughs entity",
        "partial",
        "data",
        ("bomb",),
    ),
    Case(
        "oversized response",
        "expiry",
        "a 64 MiB answer (the cap is 8 MiB)",
        "partial",
        "data",
        ("oversized",),
    ),
    Case(
        "JSON object instead of a list",
        "expiry",
        'the rows as an object {"1": row}',
        "partial",
        "data",
        ("json-object",),
    ),
    Case(
        "JSON lists instead of objects",
        "expiry",
        "every row a list of values",
        "partial",
        "data",
        ("json-list",),
    ),
    Case(
        "missing fields",
        "expiry",
        "rows with pendaftaran_id only: no expiry date, no details",
        "done",
        faults=("missing-fields",),
    ),
    Case(
        "impossible dates",
        "expiry",
        "2023-02-30 in every date field",
        "partial",
        "data",
        ("impossible-date",),
    ),
    Case(
        "0000-00-00 dates",
        "expiry",
        "0000-00-00 as expiry and issue date",
        "done",
        special="zero_date",
    ),
    Case(
        "permit number with a trailing space",
        "expiry",
        "stores the base64 of the number as typed, trailing space included",
        "done",
        special="number_trailing",
    ),
    Case(
        "permit number with a double space",
        "expiry",
        "stores the base64 of the number with its run of two spaces",
        "done",
        special="number_double",
    ),
    Case(
        "permit number with an en dash",
        "expiry",
        "stores the base64 of a number with an en dash (base64 holds + or /)",
        "done",
        special="number_dash",
    ),
    Case(
        "NUL bytes",
        "expiry",
        "a NUL inside the names, the company name and the addresses",
        "done",
        faults=("nul-bytes",),
        special="hostile",
    ),
    Case(
        "over-long values",
        "expiry",
        "applicant name and addresses of 5,000 characters, the company name "
        "of 3,000 multi-byte characters",
        "done",
        faults=("long-values",),
        special="hostile",
    ),
    Case(
        "control and bidi characters",
        "expiry",
        "the names in a right-to-left override (U+202E) with an ESC and a "
        "zero-width space inside, accents decomposed, then e + U+0301",
        "done",
        faults=("control-chars",),
        special="hostile",
    ),
    Case(
        "trickling body",
        "expiry",
        "headers at once, then one byte of the body every 0.4 s; the "
        "connector waits 1 s per read",
        "failed",
        "timeout",
        every_attempt("trickle"),
        special="trickle",
    ),
)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(rows):
    lines = [
        "| Case | Job | What the sandbox did | Sync log | Stored data | Next run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def readme_table(text):
    """The table between the markers of README.md, or None."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def with_readme_table(text, table):
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"


@tagged("post_install", "-at_install", "sicantik")
class TestFaultMatrix(SicantikSandboxCase):
    # A fixed dataset: the permits each case needs are there on every day.
    TODAY = date(2025, 6, 2)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Short backoffs keep the matrix fast; every retry still happens.
        make_api = SicantikConfig._make_api

        def quick_make_api(config, **kwargs):
            kwargs.setdefault("backoff_base", 0.05)
            kwargs.setdefault("backoff_max", 0.1)
            return make_api(config, **kwargs)

        cls.startClassPatcher(patch.object(SicantikConfig, "_make_api", quick_make_api))
        cls.config.action_sync_now()
        cls.env.ref(PERMIT_CRON).method_direct_trigger()
        cls.env.ref(EXPIRY_CRON).method_direct_trigger()
        cls.permits = cls.env["sicantik.permit"].search(
            [("config_id", "=", cls.config.id)]
        )
        dataset = cls.sandbox.dataset
        listed = {p.pendaftaran_id for p, _who in dataset.rows}
        answering = [
            p
            for p in dataset.permits
            if p.pendaftaran_id in listed and p.answers_cekperizinan
        ]

        def first(predicate, what):
            found = sorted(
                (p for p in answering if predicate(p)),
                key=lambda p: p.pendaftaran_id,
            )
            assert found, f"the sandbox dataset has no permit {what}"
            return found[0]

        cls.targets = {
            None: first(
                lambda p: len(p.applicants) == 1
                and p.no_surat.isascii()
                and p.no_surat == " ".join(p.no_surat.split())
                and p.d_berlaku_izin not in (None, ZERO_DATE),
                "with a plain number and a date",
            ),
            "entities": first(
                lambda p: "\u2018" in (p.n_perusahaan or ""),
                "whose company name has curly quotes",
            ),
            "number_trailing": first(
                lambda p: p.no_surat.endswith(" "), "whose number ends in a space"
            ),
            "number_double": first(
                lambda p: "  " in p.no_surat, "whose number has a double space"
            ),
            "number_dash": first(
                lambda p: "\u2013" in p.no_surat, "whose number has an en dash"
            ),
            # A company holder (by NPWP): its contact takes the company name.
            "hostile": first(
                lambda p: len(p.applicants) == 1
                and p.no_surat.isascii()
                and p.d_berlaku_izin not in (None, ZERO_DATE)
                and p.n_perusahaan
                and p.a_perusahaan
                and p.a_pemohon
                and len([c for c in p.company.npwp or "" if c.isdigit()]) >= 15,
                "with a company, its NPWP and both addresses",
            ),
        }
        cls.truth = cls._snapshot()

    def setUp(self):
        super().setUp()
        self._restore = []  # undoes a case's changes to the sandbox dataset
        self._reset_case()
        self.addCleanup(self._mend)

    def _reset_case(self):
        self._elapsed = None  # seconds of the run that met the fault
        self._warnings = []  # what the client logged meanwhile (some cases)
        self._old_holder = None  # the holder contact taken off (hostile)
        self._next_truth = None  # what the next run leaves, when not the truth

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------

    @classmethod
    def _snapshot(cls):
        cls.env.invalidate_all()
        # A registration's first stored permit stands for it: rows a fault
        # moved under another registration id are letters of their own.
        return {
            row["pendaftaran_id"]: tuple(row[f] for f in KEPT_FIELDS)
            for row in cls.env["sicantik.permit"].search_read(
                [("config_id", "=", cls.config.id)],
                ["pendaftaran_id", *KEPT_FIELDS],
                order="id desc",
            )
        }

    def _permit(self, source):
        pid = source.pendaftaran_id
        return self.permits.filtered(lambda p: p.pendaftaran_id == pid)

    def _break(self, case):
        if case.special in ("slow", "trickle"):
            self.config.timeout = SLOW_TIMEOUT
        if case.special == "refused":
            # The tested server going dark (the schedule uses tested ones).
            self.config.api_url = f"http://127.0.0.1:{_closed_port()}/backoffice/api"
            self.config._mark_address_tested()
        if case.knobs:
            self.sandbox.configure(**case.knobs)
        self.sandbox.queue_faults(*case.faults)

    def _mend(self):
        self.sandbox.clear_faults()
        self.sandbox.configure(latency=0.0, hang_seconds=30.0)
        if self.config.api_url != self.sandbox.url or self.config.timeout != 5:
            self.config.write({"api_url": self.sandbox.url, "timeout": 5})
            self.config._mark_address_tested()

    def _permits_served_in(self, start, stop):
        """The stored permits whose every list row is in rows[start:stop]."""
        rows = self.sandbox.dataset.rows
        inside = {p.pendaftaran_id for p, _who in rows[start:stop]}
        outside = {p.pendaftaran_id for p, _who in rows[:start] + rows[stop:]}
        return self.permits.filtered(lambda p: p.pendaftaran_id in inside - outside)

    def _timed_trigger(self, cron, case):
        """Run the job once; the client's warnings kept for some cases."""
        started = time.monotonic()
        if case.special == "extra_rows":
            with self.assertLogs(PAGES_LOGGER, "WARNING") as logged:
                cron.method_direct_trigger()
            self._warnings = logged.output
        else:
            cron.method_direct_trigger()
        self._elapsed = time.monotonic() - started

    def _assert_clean(self, value, cap):
        """A stored text holds no control or override, is NFC, fits ``cap``."""
        self.assertTrue(value)
        self.assertLessEqual(len(value), cap)
        self.assertFalse([c for c in value if unicodedata.category(c) == "Cc"])
        self.assertFalse(set(value) & BIDI_CONTROLS)
        self.assertTrue(unicodedata.is_normalized("NFC", value))

    def _future_trigger(self, cron, since):
        """Triggers of ``cron`` set for after ``since`` (the case's start: a
        Retry-After of 1 s may be due by the time it is checked)."""
        return self.env["ir.cron.trigger"].search_count(
            [("cron_id", "=", cron.id), ("call_at", ">", since)]
        )

    # ------------------------------------------------------------------
    # one case
    # ------------------------------------------------------------------

    def _run_permit_case(self, case, cron):
        """A pass is under way (page 1 stored); the fault meets page 2."""
        if case.special == "entities":
            self.sandbox.queue_faults(*("xml",) * 12)  # types and every page
        self.config.action_sync_now()
        with self.param("sicantik_connector.sync_pages_per_batch", 1):
            cron.method_direct_trigger()
            size = self.config.page_size
            self.assertEqual(self.config.sync_offset, size)
            if case.special == "hostile":
                # Permits not named yet: the list's name is stored (a name
                # already stored is kept, so passes do not flip it).
                self._permits_served_in(size, 2 * size).applicant_name = False
            elif case.special == "extra_rows":
                # Named again only when their rows are read after the cut.
                self._permits_served_in(size, None).applicant_name = False
            if case.special != "entities":
                self._break(case)
            self._timed_trigger(cron, case)
        log = self.logs("permits")[0]
        if log.state == "running":  # the fault did not stop the pass
            self.run_cron(PERMIT_CRON)
        self._mend()
        if case.failure:
            self.assertEqual(
                self.config.sync_offset, self.config.page_size, "the cursor stays"
            )
        return log

    def _run_expiry_case(self, case, cron):
        """One permit is due; the fault meets its cekperizinan request."""
        source = self.targets.get(case.special, self.targets[None])
        permit = self._permit(source)
        if source is self.targets[None]:
            self.assertTrue(permit.expiry_date, "a stored date to keep")
        if case.special == "zero_date":
            saved = (source.d_berlaku_izin, source.tgl_surat)
            self._restore.append(
                lambda: setattr(source, "d_berlaku_izin", saved[0])
                or setattr(source, "tgl_surat", saved[1])
            )
            source.d_berlaku_izin = source.tgl_surat = ZERO_DATE
        if case.special and case.special.startswith("number_"):
            number = source.no_surat
            self.assertEqual(permit.no_surat, number, "stored exactly as served")
            if case.special == "number_dash":
                self.assertTrue(set(b64(number)) & {"+", "/"})
            else:  # trimming or collapsing the spaces would ask another number
                self.assertNotEqual(b64(number), b64(" ".join(number.split())))
        if case.special == "hostile":
            # The holder's contact is made anew from this answer.
            old = permit.partner_id
            self.assertEqual(old.sicantik_key, permit._holder_key())
            self.assertIn(":npwp:", old.sicantik_key)
            old.sicantik_key = False
            permit.partner_id = False
            self._old_holder = old
        permit.action_check_expiry_now()
        self.assertEqual(self.config.expiry_due_count, 1)
        self._break(case)
        self._timed_trigger(cron, case)
        self._mend()
        return self.logs("expiry")[0]

    def _stored_data(self, case, after):
        """The "Stored data" cell, each claim checked first."""
        if case.special == "zero_date":
            source = self.targets[None]
            permit = self._permit(source)
            old = self.truth[source.pendaftaran_id]
            self.assertTrue(permit.expiry_unlimited)
            self.assertFalse(permit.expiry_date)
            self.assertEqual(permit.expiry_state, "ok")
            self.assertEqual(permit.issue_date, old[KEPT_FIELDS.index("issue_date")])
            others = {k: v for k, v in after.items() if k != source.pendaftaran_id}
            self.assertEqual(others, {k: self.truth[k] for k in others})
            return "expiry stored as valid while the business runs; issue date kept"
        if case.special in ("duplicates", "one_id"):
            self._assert_nothing_replaced(after)
            stored = self.env["sicantik.permit"].search(
                [("config_id", "=", self.config.id)]
            )
            keys = [(p.pendaftaran_id, p.no_surat) for p in stored]
            self.assertEqual(len(keys), len(set(keys)))
            if case.special == "one_id":
                first = self.sandbox.dataset.rows[self.config.page_size][0]
                self.assertEqual(len(self._permit(first)), 1)
                return "no stored value replaced; one permit per letter for that id"
            return "no stored value replaced; one permit per registration id and letter"
        if case.special == "hostile":
            return self._stored_hostile(case, after)
        self.assertEqual(after, self.truth, "stored data unchanged")
        if case.special == "extra_rows":
            pids = self.permits.mapped("pendaftaran_id")
            self.assertEqual(len(pids), len(set(pids)))
            self.assertEqual(set(pids), self.listed_ids())
            size = self.config.page_size
            served = min(
                EXTRA_ROWS_FACTOR * size, len(self.sandbox.dataset.rows) - size
            )
            cut = f"{served} rows served for a page of {size}"
            self.assertTrue([w for w in self._warnings if cut in w], self._warnings)
            return (
                "every permit stored once, none lost past the cut page; "
                "a warning logs the rows served beyond the page"
            )
        if case.special == "trickle":
            self.assertIn("still sending", self.logs(case.job)[0].sudo().error_detail)
            self.assertLess(self._elapsed, TRICKLE_BOUND)
            return (
                f"unchanged; each attempt cut by the {SLOW_DEADLINE} s body "
                f"deadline (the run checked under {TRICKLE_BOUND} s)"
            )
        if case.special == "xxe":
            self.assertNotIn("root:", repr(after))
        if case.special == "entities":
            if case.job == "permits":
                jose = next(
                    p
                    for p, who in self.sandbox.dataset.rows
                    if "Jos\u00e9" in who.n_pemohon and len(p.applicants) == 1
                )
                self.assertEqual(self._permit(jose).applicant_name, jose.n_pemohon)
            else:
                source = self.targets["entities"]
                self.assertEqual(
                    self._permit(source).company_name,
                    " ".join(source.n_perusahaan.split()),
                )
            return "unchanged: names decoded exactly as in JSON"
        if case.special and case.special.startswith("number_"):
            source = self.targets[case.special]
            permit = self._permit(source)
            # Answered (a 404 would leave it "unavailable"), in one request.
            self.assertEqual(self.requests_to("cekperizinan"), 1)
            self.assertIn(permit.expiry_check_state, ("found", "no_date"))
            if permit.expiry_unlimited:
                self.assertEqual(source.d_berlaku_izin, ZERO_DATE)
            elif permit.expiry_date:
                self.assertEqual(str(permit.expiry_date), source.d_berlaku_izin)
            else:
                self.assertIsNone(source.d_berlaku_izin)
            return "answer found: the exact base64 of the number matched"
        return "unchanged"

    def _stored_hostile(self, case, after):
        """Hostile text stored cleaned: checked against the answer served."""
        (fault,) = case.faults
        if case.job == "permits":
            texts = self._check_hostile_names(fault, after)
            self._next_truth = after  # a stored name is kept by the next pass
            holder = ""
        else:
            texts = self._check_hostile_details(fault, after)
            holder = "; the holder contact created"
        if fault == "nul-bytes":
            self.assertEqual(after, self.truth, "the served values less the NUL")
            return f"stored less the NUL: the values as before{holder}"
        if fault == "long-values":
            # At the cap, or one short where the cut left a trailing space.
            for cap, values in texts.items():
                self.assertEqual(max(map(len, values)), cap)
                self.assertGreaterEqual(min(map(len, values)), cap - 1)
            if case.job == "permits":
                return f"names cut to {NAME_MAX} characters"
            return (
                f"company name cut to {NAME_MAX} characters, addresses to "
                f"{TEXT_MAX}{holder} with the cut name"
            )
        names = texts[NAME_MAX]
        self.assertTrue(all(n.endswith(" Jos\u00e9") and ZWSP not in n for n in names))
        return (
            "ESC, overrides and zero-width spaces removed, accents composed "
            f"(NFC){holder}"
        )

    def _check_hostile_names(self, fault, after):
        """The permits first named by the faulted page hold its names,
        cleaned; no other permit changed. Returns {cap: stored names}."""
        size = self.config.page_size
        rows = alter_payload(fault, self.sandbox.dataset.listed_rows()[size : 2 * size])
        named = self._permits_served_in(size, 2 * size)
        self.assertTrue(named)
        for permit in named:
            served = next(
                r["n_pemohon"]
                for r in rows
                if r["pendaftaran_id"] == permit.pendaftaran_id
            )
            expected = stored_form(served, NAME_MAX)
            self.assertNotEqual(served, expected)
            if expected in JUNK_NAMES:  # "0" with a NUL is "0" still: no name
                self.assertFalse(permit.applicant_name)
                continue
            self.assertEqual(permit.applicant_name, expected)
            self._assert_clean(permit.applicant_name, NAME_MAX)
        others = set(after) - set(named.mapped("pendaftaran_id"))
        self.assertEqual(
            {k: after[k] for k in others}, {k: self.truth[k] for k in others}
        )
        return {NAME_MAX: [n for n in named.mapped("applicant_name") if n]}

    def _check_hostile_details(self, fault, after):
        """The answered permit holds the answer's texts, cleaned, and a new
        holder contact named after its company; no other permit changed.
        Returns {cap: stored texts the fault altered}."""
        source = self.targets["hostile"]
        permit = self._permit(source)
        (original,) = source.items()
        (served,) = alter_payload(fault, [original])
        old = dict(zip(KEPT_FIELDS, self.truth[source.pendaftaran_id], strict=True))
        texts = {}
        for key, field, cap in DETAIL_TEXTS:
            if served[key] == original[key]:  # a field the fault leaves alone
                self.assertEqual(permit[field], old[field])
                continue
            self.assertNotEqual(served[key], stored_form(served[key], cap))
            self.assertEqual(permit[field], stored_form(served[key], cap))
            self._assert_clean(permit[field], cap)
            texts.setdefault(cap, []).append(permit[field])
        self.assertIn(NAME_MAX, texts, "the company name is altered")
        others = {k: v for k, v in after.items() if k != source.pendaftaran_id}
        self.assertEqual(others, {k: self.truth[k] for k in others})
        holder = permit.partner_id
        self.assertTrue(holder, "the holder contact is created")
        self.assertNotEqual(holder, self._old_holder)
        self.assertEqual(holder.name, permit.company_name)
        self.assertEqual(holder.sicantik_key, permit._holder_key())
        return texts

    def _assert_nothing_replaced(self, after):
        """Rows sharing an id are one permit to the client (two applicants or
        letters): a blank may be filled from the other row, but no stored
        value is replaced."""
        self.assertEqual(set(after), set(self.truth))
        for pid, values in self.truth.items():
            for old, new in zip(values, after[pid], strict=True):
                self.assertTrue(not old or old == new, (pid, old, new))

    def _next_run(self, case, cron):
        """The "Next run" cell: the job runs again without the fault."""
        if case.job == "permits":
            if self.config.sync_pass_state == "in_progress":
                self.run_cron(PERMIT_CRON)  # continues the pass at the cursor
            else:
                self.sync_permits()
            log = self.logs("permits")[0]
        else:
            # A stopped run left the permit due; a permit whose answer was
            # bad is asked again after a backoff, here brought forward.
            source = self.targets.get(case.special, self.targets[None])
            self._permit(source).action_check_expiry_now()
            self.run_cron(EXPIRY_CRON)
            log = self.logs("expiry")[0]
            self.assertEqual(log.progress_done, 1)
        self.assertEqual(log.state, "done", log.error_detail)
        self.assertTrue(cron.active)
        if case.special in ("duplicates", "one_id"):
            self._assert_nothing_replaced(self._snapshot())
        elif self._next_truth is not None:
            self.assertEqual(self._snapshot(), self._next_truth, "nothing else changes")
        else:
            self.assertEqual(self._snapshot(), self.truth, "all as served again")
        return "done"

    def _run_case(self, case):
        self._reset_case()
        cron = self.env.ref(CRONS[case.job])
        started = fields.Datetime.now()
        triggers = self._future_trigger(cron, started)
        self.sandbox.reset_stats()
        if case.job == "permits":
            log = self._run_permit_case(case, cron)
        else:
            log = self._run_expiry_case(case, cron)
        after = self._snapshot()
        # The sync log row: its state and a reason in plain words.
        self.assertEqual(log.state, case.state, log.error_detail)
        self.assertEqual(log.failure_type or None, case.failure, log.error_detail)
        states = dict(log._fields["state"]._description_selection(self.env))
        outcome = states[log.state]
        if case.failure:
            self.assertTrue(log.failure_reason)
            self.assertTrue(log.sudo().error_detail, "the technical detail is kept")
            outcome = f"{outcome}: {log.failure_reason}"
        # The schedule stays alive; a Retry-After becomes a trigger.
        self.assertTrue(cron.active)
        if case.special == "retry_after":
            self.assertGreater(self._future_trigger(cron, started), triggers)
        data = self._stored_data(case, after)
        while self._restore:
            self._restore.pop()()
        return (
            case.name,
            JOB_LABELS[case.job],
            case.did,
            outcome,
            data,
            self._next_run(case, cron),
        )

    # ------------------------------------------------------------------
    # the matrix
    # ------------------------------------------------------------------

    @mute_logger(
        "odoo.addons.sicantik_connector.models",
        "odoo.addons.sicantik_connector.tools",
    )
    def test_fault_matrix(self):
        rows = []
        for case in PERMIT_CASES + EXPIRY_CASES:
            with self.subTest(case=case.name, job=case.job):
                savepoint = self.cr.savepoint()
                try:
                    rows.append(self._run_case(case))
                except AssertionError as err:
                    rows.append((case.name, JOB_LABELS[case.job], case.did, "", "", ""))
                    raise err
                finally:
                    # Every case starts from the same fully synced database.
                    savepoint.close(rollback=True)
                    self.env.invalidate_all()
                    while self._restore:
                        self._restore.pop()()
                    self._mend()
        table = markdown_table(rows)
        text = README.read_text(encoding="utf-8")
        if os.environ.get("SICANTIK_WRITE_FAULT_TABLE") == "1":
            self.assertIsNotNone(readme_table(text), f"README.md lacks {START}")
            README.write_text(with_readme_table(text, table), encoding="utf-8")
        self.assertEqual(
            readme_table(README.read_text(encoding="utf-8")),
            table,
            "README.md's fault table is stale: run the fault matrix with "
            "SICANTIK_WRITE_FAULT_TABLE=1",
        )
