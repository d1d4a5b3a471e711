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
from datetime import date
from pathlib import Path
from typing import NamedTuple
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.sicantik_config import SicantikConfig
from ..sandbox.data import ZERO_DATE, b64
from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"
CRONS = {"permits": PERMIT_CRON, "expiry": EXPIRY_CRON}
JOB_LABELS = {"permits": "permit list", "expiry": "expiry dates"}
README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"
# One fault per attempt: the first try and the client's three retries.
ATTEMPTS = 4
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
        }
        cls.truth = cls._snapshot()

    def setUp(self):
        super().setUp()
        self._restore = []  # undoes a case's changes to the sandbox dataset
        self.addCleanup(self._mend)

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------

    @classmethod
    def _snapshot(cls):
        cls.env.invalidate_all()
        return {
            row["pendaftaran_id"]: tuple(row[f] for f in KEPT_FIELDS)
            for row in cls.env["sicantik.permit"].search_read(
                [("config_id", "=", cls.config.id)], ["pendaftaran_id", *KEPT_FIELDS]
            )
        }

    def _permit(self, source):
        pid = source.pendaftaran_id
        return self.permits.filtered(lambda p: p.pendaftaran_id == pid)

    def _break(self, case):
        if case.special == "slow":
            self.config.timeout = 1
        if case.special == "refused":
            self.config.api_url = f"http://127.0.0.1:{_closed_port()}/backoffice/api"
        if case.knobs:
            self.sandbox.configure(**case.knobs)
        self.sandbox.queue_faults(*case.faults)

    def _mend(self):
        self.sandbox.clear_faults()
        self.sandbox.configure(latency=0.0, hang_seconds=30.0)
        if self.config.api_url != self.sandbox.url or self.config.timeout != 5:
            self.config.write({"api_url": self.sandbox.url, "timeout": 5})

    def _future_trigger(self, cron):
        return self.env["ir.cron.trigger"].search_count(
            [("cron_id", "=", cron.id), ("call_at", ">", fields.Datetime.now())]
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
            self.assertEqual(self.config.sync_offset, self.config.page_size)
            if case.special != "entities":
                self._break(case)
            cron.method_direct_trigger()
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
        permit.action_check_expiry_now()
        self.assertEqual(self.config.expiry_due_count, 1)
        self._break(case)
        cron.method_direct_trigger()
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
        if case.special == "duplicates":
            self._assert_nothing_replaced(after)
            pids = self.permits.mapped("pendaftaran_id")
            self.assertEqual(len(pids), len(set(pids)))
            return "no stored value replaced; one permit per registration id"
        self.assertEqual(after, self.truth, "stored data unchanged")
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
        if case.special == "duplicates":
            self._assert_nothing_replaced(self._snapshot())
        else:
            self.assertEqual(self._snapshot(), self.truth, "all as served again")
        return "done"

    def _run_case(self, case):
        cron = self.env.ref(CRONS[case.job])
        triggers = self._future_trigger(cron)
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
            self.assertGreater(self._future_trigger(cron), triggers)
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
