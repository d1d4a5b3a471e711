"""What a sync log says: its texts, in the language of the job or the user.

The one-sentence ``summary`` of a run, the staff-facing reason of a failure
or of a row the database refused, numbers, durations and dates written the
way the reader's language writes them, the message of a passed connection
test, and the notifications that link to a log. Only texts: no write, no
search. ``sicantik.sync.log`` inherits it (same table, no field of its own).
"""

from odoo import _, api, fields, models
from odoo.tools.misc import formatLang
from odoo.tools.translate import LazyTranslate

from ..tools import const
from ..tools.api_errors import FT_LIMITER

_lt = LazyTranslate(__name__)

# Failure types of the client (``SicantikError.failure_type``) plus the two the
# Odoo layer adds, in words a permit office's staff can act on.
FAILURE_REASONS = {
    const.FT_TIMEOUT: _lt(
        "The SICANTIK server did not answer in time. Check the address and the "
        "network, or raise the timeout."
    ),
    const.FT_CONNECTION: _lt(
        "Odoo could not reach the SICANTIK server. Check the API URL (server "
        "name and port) and that this Odoo server can reach the internet."
    ),
    const.FT_TLS: _lt(
        "The secure (https) connection to the SICANTIK server failed: its "
        "certificate is not trusted or does not match the address. Check the "
        "API URL or ask the server's administrator to renew the certificate."
    ),
    const.FT_SERVER: _lt(
        "The SICANTIK server reported an internal error. It is probably busy or "
        "under maintenance; the sync tries again later."
    ),
    const.FT_RATE_LIMITED: _lt(
        "The SICANTIK server asked the connector to slow down. The sync "
        "continues later; lower the requests per second if this repeats."
    ),
    const.FT_BAD_REQUEST: _lt(
        "The SICANTIK server refused a request of the connector. This is a "
        "fault of the connector: send the technical detail to your administrator."
    ),
    const.FT_NOT_FOUND: _lt("The SICANTIK server has no data for this request."),
    const.FT_BAD_RESPONSE: _lt(
        "The SICANTIK server sent an answer the connector cannot read. Check "
        "that the API URL points at the backoffice API (it ends in "
        "/backoffice/api)."
    ),
    const.FT_TOO_LARGE: _lt(
        "The SICANTIK server sent an answer larger than allowed. Lower the page "
        "size of the connector."
    ),
    const.FT_DATA: _lt(
        "SICANTIK sent a permit with unusable data; it was skipped and the "
        "others were synced."
    ),
    const.FT_CONFIG: _lt(
        "The connector's settings do not work with this server. Check the API "
        "URL (it must end in /backoffice/api) and that this server may call "
        "the API."
    ),
    FT_LIMITER: _lt(
        "Odoo could not reach its own database to pace the requests to the "
        "SICANTIK server, so it sent nothing. The sync tries again later; if "
        "this repeats, ask your administrator to check the database server."
    ),
    "interrupted": _lt(
        "The run stopped before its end, most likely because the Odoo server "
        "was restarted or stopped it for running too long. The next run "
        "continues where it stopped."
    ),
    "internal": _lt(
        "An unexpected error occurred in the connector. The technical detail "
        "is for your administrator."
    ),
    "untested": _lt(
        "The schedule does not use this API URL: it has not passed Test "
        "Connection yet (or its last test failed). Open the connector and "
        "press Test Connection; Sync Now also works with it."
    ),
}


class SicantikSyncLogText(models.AbstractModel):
    """The texts built from a sync log (see the module docstring).

    Meant for ``sicantik.sync.log`` only: the methods read its fields.
    """

    _name = "sicantik.sync.log.text"
    _description = "SICANTIK Sync Log Texts"

    # ------------------------------------------------------------
    # FAILURES (in staff words)
    # ------------------------------------------------------------

    @api.model
    def _failure_reason(self, failure_type):
        """The staff-facing sentence for a failure type (translated)."""
        reason = FAILURE_REASONS.get(failure_type) or FAILURE_REASONS["internal"]
        return str(reason)

    @api.model
    def _row_refusal_reason(self, err):
        """Why the database refused one permit's row, in staff words."""
        code = getattr(err, "pgcode", None)
        if isinstance(err, ValueError):
            return _("a value holds a character the database cannot store")
        if code == "22001":
            return _("a value is longer than its field allows")
        if code == "54000":
            return _("a value is too long to be searched by")
        if code and code.startswith("23"):
            return _("the row breaks a rule of the database (%(code)s)", code=code)
        return _("the database refused the row (%(code)s)", code=code or "-")

    # ------------------------------------------------------------
    # SUMMARY (in the language of the environment: the connector's)
    # ------------------------------------------------------------

    def _in_job_lang(self):
        """This row in its connector's language (the language of job texts)."""
        self.ensure_one()
        config = self.config_id
        return self.with_context(lang=config._job_lang()) if config else self

    def _number(self, value, digits=0):
        """``value`` in the environment's language (1.979 / 1,0 in Indonesian)."""
        return formatLang(self.env, value or 0, digits=digits)

    def _duration_text(self, seconds):
        seconds = max(0.0, seconds or 0.0)
        if seconds < 60:
            return _("%(seconds)s s", seconds=self._number(seconds, 1))
        minutes, rest = divmod(round(seconds), 60)
        if minutes < 60:
            return _(
                "%(minutes)s min %(seconds)s s",
                minutes=self._number(minutes),
                seconds=self._number(rest),
            )
        hours, minutes = divmod(minutes, 60)
        return _(
            "%(hours)s h %(minutes)s min",
            hours=self._number(hours),
            minutes=self._number(minutes),
        )

    def _summary_text(self):
        """The run in one sentence whose counts add up."""
        self.ensure_one()
        if self.operation == "permits":
            body = self._permits_summary()
        elif self.operation == "expiry":
            body = self._expiry_summary()
        elif self.operation == "permit_types":
            body = _(
                "%(count)s permit types read: %(created)s new, %(updated)s "
                "updated, %(unchanged)s unchanged",
                count=self._number(self.fetched_count),
                created=self._number(self.created_count),
                updated=self._number(self.updated_count),
                unchanged=self._number(self.unchanged_count),
            )
        else:
            body = (self.message or "").strip().split("\n")[0].rstrip(".")
        worked = self.rows_read or self.progress_done or self.fetched_count
        if self.state in ("failed", "interrupted") and not worked:
            return _(
                "Stopped before any work: %(reason)s",
                reason=self.failure_reason or self._failure_reason(self.failure_type),
            )
        if self.state == "running":
            return _("Running: %(summary)s.", summary=body)
        if not body:
            return False
        if self.rate_limit_wait >= 0.05:
            timing = _(
                "%(duration)s, of which %(wait)s waiting on the rate limit",
                duration=self._duration_text(self.duration),
                wait=self._duration_text(self.rate_limit_wait),
            )
        else:
            timing = self._duration_text(self.duration)
        return f"{body}; {timing}."

    def _permits_summary(self):
        """Rows read -> permits, the difference explained, then what was
        done with the permits (new + updated + unchanged + set aside)."""
        if not self.rows_read and not self.fetched_count:
            return _("no row of the permit list read yet")
        repeated = max(0, self.rows_read - self.fetched_count - self.skipped_count)
        head = _(
            "%(rows)s rows of the permit list read → %(permits)s permits",
            rows=self._number(self.rows_read),
            permits=self._number(self.fetched_count),
        )
        extras = []
        if repeated:
            extras.append(
                _(
                    "%(count)s repeated rows of the same letter",
                    count=self._number(repeated),
                )
            )
        if self.skipped_count:
            extras.append(
                _(
                    "%(count)s unusable rows skipped",
                    count=self._number(self.skipped_count),
                )
            )
        if extras:
            head = f"{head} ({', '.join(extras)})"
        done = _(
            "%(created)s new, %(updated)s updated, %(unchanged)s unchanged",
            created=self._number(self.created_count),
            updated=self._number(self.updated_count),
            unchanged=self._number(self.unchanged_count),
        )
        if self.failed_count:
            done = _(
                "%(done)s, %(count)s set aside",
                done=done,
                count=self._number(self.failed_count),
            )
        return f"{head}: {done}"

    def _expiry_summary(self):
        """Permits checked = answered + not available + errors."""
        return _(
            "%(checked)s permits checked: %(answered)s answered by SICANTIK "
            "(%(changed)s with a changed expiry date), %(unavailable)s not "
            "available from SICANTIK, %(failed)s errors",
            checked=self._number(self.progress_done),
            answered=self._number(self.fetched_count),
            changed=self._number(self.updated_count),
            unavailable=self._number(self.skipped_count),
            failed=self._number(self.failed_count),
        )

    def _test_ok_message(self, url, count, rows):
        """What a passed connection test says (both endpoints answered)."""
        if rows:
            return _(
                "Connected to %(url)s: SICANTIK knows %(count)s permit types "
                "and its permit list can be read.",
                url=url,
                count=self._number(count),
            )
        return _(
            "Connected to %(url)s: SICANTIK knows %(count)s permit types; its "
            "permit list answers but holds no issued permit yet.",
            url=url,
            count=self._number(count),
        )

    # ------------------------------------------------------------
    # NOTIFICATIONS (in the user's language, linking to a log)
    # ------------------------------------------------------------

    @api.model
    def _when_text(self, moment):
        """A datetime in the user's time zone and language."""
        if not moment:
            return "-"
        return fields.Datetime.to_string(
            fields.Datetime.context_timestamp(self, moment)
        )[:16]

    def _url(self):
        """The log's address in the web client."""
        self.ensure_one()
        return f"/odoo/action-sicantik_connector.sicantik_sync_log_action/{self.id}"

    def _notification_action(self, message, kind="info", title=None, **params):
        """A ``display_notification`` whose ``%s`` in ``message`` links to
        this log (or to the sync logs when the run has no row yet); without
        a ``%s`` the link ends the message."""
        if "%s" not in message:
            message = f"{message}\n%s"
        if self:
            link = {"label": self.display_name, "url": self._url()}
        else:
            link = {
                "label": _("Sync Logs"),
                "url": "/odoo/action-sicantik_connector.sicantik_sync_log_action",
            }
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": kind,
                "title": title or "",
                "message": message,
                "links": [link],
                "sticky": kind in ("warning", "danger"),
                **params,
            },
        }
