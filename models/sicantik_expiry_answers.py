import logging

from odoo import _, api, models

from ..tools import expiry
from .bulk_sql import ROW_ERRORS, bulk_update, row_attempt

_logger = logging.getLogger(__name__)

# The cekperizinan details an empty answer never erases.
DETAIL_COLUMNS = (
    "received_date",
    "issue_date",
    "applicant_address",
    "applicant_phone",
    "company_name",
    "npwp",
    "company_address",
    "kelurahan",
    "kecamatan",
)


def _is_details(result):
    return result is not None and not isinstance(result, Exception)


class SicantikExpiryAnswers(models.AbstractModel):
    """cekperizinan answers into permits: one set-based write per chunk, a
    row the database refuses set aside alone, holders linked. The expiry
    sync (``sicantik.expiry.sync``) inherits it; it only writes what it is
    given and asks nothing of the server.
    """

    _name = "sicantik.expiry.answers"
    _description = "SICANTIK Expiry Answers"

    @api.model
    def _apply_results(self, config, results, now, today):
        """Write one chunk of cekperizinan results with ONE set-based UPDATE.

        ``results`` is a list of ``(row, result)`` where ``row`` is the dict
        selected by ``_select_work`` and ``result`` a ``PermitDetails``, None
        (404: no data, e.g. a permit without a company) or a record-scope
        ``SicantikError``. Returns ``(counts, changes)``.
        """
        counts = dict.fromkeys(
            ("found", "no_date", "unavailable", "failed", "updated", "unchanged"), 0
        )
        counts["set_aside"] = []
        changes = []
        updates = {}
        for row, result in results:
            values = self._result_values(row, result, now, today)
            outcome = values["expiry_check_state"]
            counts["failed" if outcome == "error" else outcome] += 1
            old_date = row["expiry_date"]
            if old_date and values["expiry_date"] != old_date:
                changes.append((row["id"], old_date, values["expiry_date"]))
            if values["expiry_date"] != row["expiry_date"] or values[
                "expiry_unlimited"
            ] != bool(row["expiry_unlimited"]):
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
            updates[row["id"]] = values
        refused = self._write_results(results, updates, now, today, counts)
        answered = [
            row["id"]
            for row, result in results
            if _is_details(result) and row["id"] not in refused
        ]
        self._link_holders(self.env["sicantik.permit"].sudo().browse(answered))
        return counts, [change for change in changes if change[0] not in refused]

    @api.model
    def _write_results(self, results, updates, now, today, counts):
        """One UPDATE for the chunk; when the database refuses a row, row by
        row: a refused answer is set aside (the permit keeps its stored data,
        counts as an error and is asked again later). Returns the refused
        permit ids."""
        Permit = self.env["sicantik.permit"].sudo()
        Log = self.env["sicantik.sync.log"]
        if not updates:
            return set()
        Permit.flush_model()
        refused = set()
        try:
            with row_attempt(self.env.cr):
                bulk_update(Permit, updates, keep_null=DETAIL_COLUMNS)
        except ROW_ERRORS:
            for row, _result in results:
                try:
                    with row_attempt(self.env.cr):
                        bulk_update(
                            Permit,
                            {row["id"]: updates[row["id"]]},
                            keep_null=DETAIL_COLUMNS,
                        )
                except ROW_ERRORS as err:
                    reason = Log._row_refusal_reason(err)
                    refused.add(row["id"])
                    counts["set_aside"].append((row["pendaftaran_id"], reason))
                    self._count_refused(counts, row, updates[row["id"]])
                    values = self._result_values(row, ValueError(reason), now, today)
                    bulk_update(Permit, {row["id"]: values}, keep_null=DETAIL_COLUMNS)
        Permit.invalidate_model()
        return refused

    @api.model
    def _count_refused(self, counts, row, values):
        """A refused answer counts as an error, not as what it said."""
        outcome = values["expiry_check_state"]
        counts["failed" if outcome == "error" else outcome] -= 1
        counts["failed"] += 1
        changed = values["expiry_date"] != row["expiry_date"] or values[
            "expiry_unlimited"
        ] != bool(row["expiry_unlimited"])
        counts["updated" if changed else "unchanged"] -= 1
        counts["unchanged"] += 1

    @api.model
    def _link_holders(self, permits):
        """Link the answered permits to their holders; a holder the database
        refuses leaves its permit unlinked (tried again with its next answer)
        and never costs the chunk."""
        try:
            with row_attempt(self.env.cr, flush=True):
                permits._link_partners()
        except ROW_ERRORS:
            for permit in permits:
                try:
                    with row_attempt(self.env.cr, flush=True):
                        permit._link_partners()
                except ROW_ERRORS as err:
                    _logger.warning(
                        "SICANTIK: holder of permit %s not linked (%s)",
                        permit.pendaftaran_id,
                        getattr(err, "pgcode", None) or type(err).__name__,
                    )

    @api.model
    def _result_values(self, row, result, now, today):
        """Columns of one permit after its cekperizinan answer."""
        attempts = row["expiry_check_attempts"] or 0
        date, unlimited = row["expiry_date"], bool(row["expiry_unlimited"])
        source, obtained = row["expiry_source"], row["expiry_obtained_at"]
        details = dict.fromkeys(DETAIL_COLUMNS)
        error = None
        if result is None:
            outcome = "unavailable"
        elif isinstance(result, Exception) and not (row["no_surat"] or "").strip():
            # Without a permit number SICANTIK cannot be asked: not an error
            # of the run; the number may come with a later permit sync.
            outcome = "unavailable"
            error = _("No permit number: SICANTIK cannot be asked about it.")
        elif isinstance(result, Exception):
            outcome = "error"
            attempts += 1
            error = str(result)[:250]
        else:
            details = {column: getattr(result, column) for column in DETAIL_COLUMNS}
            if result.expiry_unlimited or result.expiry_date:
                outcome = "found"
                new_date = None if result.expiry_unlimited else result.expiry_date
                if new_date != date or result.expiry_unlimited != unlimited:
                    source, obtained = "cekperizinan", now
                date, unlimited = new_date, bool(result.expiry_unlimited)
                if not source:
                    source, obtained = "cekperizinan", now
            else:
                # NULL or an impossible date: keep what we had.
                outcome = "no_date"
                if result.expiry_invalid:
                    error = _(
                        "SICANTIK gave an impossible expiry date: %(raw)s",
                        raw=result.expiry_raw,
                    )
            attempts = 0
        state = expiry.state_for(date, unlimited, today)
        return {
            "expiry_date": date,
            "expiry_unlimited": unlimited,
            "expiry_source": source,
            "expiry_obtained_at": obtained,
            "expiry_check_state": outcome,
            "next_expiry_check": expiry.next_check(
                outcome, now, today, None if unlimited else date, attempts
            ),
            "expiry_checked_at": now,
            "expiry_check_attempts": attempts,
            "expiry_check_error": error,
            "expiry_state": state,
            "status": expiry.status_for(state, row["status"]),
            **details,
        }
