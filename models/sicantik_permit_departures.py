import logging

from odoo import _, api, fields, models
from odoo.tools import SQL

from .sicantik_permit_sync import PRESENCE_COLUMNS

_logger = logging.getLogger(__name__)

# Departures: how many complete passes in a row must miss a permit before
# it is marked no longer listed (the list's order of ties is not stable,
# so one pass can miss a row that another serves twice), and the share of
# the listed permits one pass may mark (more means a broken list).
DELIST_AFTER_PASSES = 2
DELIST_MAX_PERCENT = 10
DELIST_ALWAYS_ALLOWED = 5


class SicantikPermitDepartures(models.AbstractModel):
    """A permit's presence on the permit list, pass after pass: each page
    marks the permits it lists with the pass; at the end of a complete pass
    the permits it did not list are counted as missed, and marked no longer
    listed after enough passes in a row, unless the list looks broken.

    Called by the permit sync (``sicantik.permit.sync``) with plain methods;
    set-based, a few statements per page or pass.
    """

    _name = "sicantik.permit.departures"
    _description = "SICANTIK Permit Departures"

    @api.model
    def _mark_listed(self, permit_ids, marker):
        """The stored permits of a page were listed by the pass ``marker``:
        one UPDATE (no write date: bookkeeping, not a change of the permit);
        a permit marked no longer listed is listed again."""
        if not permit_ids:
            return
        self.env.cr.execute(
            SQL(
                """UPDATE sicantik_permit
                      SET listed_pass = %s, missed_passes = 0, delisted_date = NULL
                    WHERE id = ANY(%s)""",
                marker,
                permit_ids,
            )
        )
        self.env["sicantik.permit"].invalidate_model(PRESENCE_COLUMNS)

    @api.model
    def _count_missed(self, config, marker, after):
        """Count one more missed pass for every permit this pass did not list;
        returns (permits missed ``after`` passes in a row, listed permits)."""
        Permit = self.env["sicantik.permit"]
        Permit.flush_model()
        cr = self.env.cr
        cr.execute(
            SQL(
                """UPDATE sicantik_permit
                      SET missed_passes = COALESCE(missed_passes, 0) + 1
                    WHERE config_id = %(config)s AND delisted_date IS NULL
                      AND (listed_pass IS NULL OR listed_pass < %(marker)s)""",
                config=config.id,
                marker=marker,
            )
        )
        cr.execute(
            SQL(
                """SELECT count(*) FILTER (WHERE missed_passes >= %s), count(*)
                     FROM sicantik_permit
                    WHERE config_id = %s AND delisted_date IS NULL""",
                after,
                config.id,
            )
        )
        counts = cr.fetchone()
        Permit.invalidate_model(PRESENCE_COLUMNS)
        return counts

    @api.model
    def _note_list_incomplete(self, config, log, leaving, listed, percent):
        """Too many permits would leave at once: the list is taken for broken."""
        _logger.warning(
            "SICANTIK %s (id %s): %s of %s permits missing from the permit "
            "list; more than %s%%, none marked as no longer listed",
            config.name,
            config.id,
            leaving,
            listed,
            percent,
        )
        self._add_log_message(
            log,
            _(
                "%(count)s of %(listed)s permits were missing from SICANTIK's "
                "list, more than %(percent)s %%: the list looks incomplete, "
                "so none was marked as no longer listed. If they really "
                "left SICANTIK, an administrator can raise the system "
                "parameter sicantik_connector.delist_max_percent.",
                count=leaving,
                listed=listed,
                percent=percent,
            ),
        )

    @api.model
    def _mark_departures(self, config, log):
        """Mark the permits this complete pass did not list.

        Called only when a pass reached the end of the list (a pass resumed
        after a stop or a kill included: every page it read marked its
        permits with the pass, ``listed_pass``). A permit missed by
        ``sicantik_connector.delist_after_passes`` complete passes in a row
        (2) gets ``delisted_date``, its queued reminders are cancelled and no
        new ones are queued; it is never deleted. When more permits would
        leave at once than ``sicantik_connector.delist_max_percent`` (10 %)
        of the listed ones (and more than 5), the list is taken for broken
        and nothing is marked. Set-based: a few statements per pass.
        """
        marker = config.sync_pass_started_at
        if not marker:
            return 0
        Job = self.env["sicantik.job.mixin"]
        after = max(
            1,
            Job._job_param_int(
                "sicantik_connector.delist_after_passes", DELIST_AFTER_PASSES
            ),
        )
        percent = Job._job_param_int(
            "sicantik_connector.delist_max_percent", DELIST_MAX_PERCENT
        )
        leaving, listed = self._count_missed(config, marker, after)
        Permit = self.env["sicantik.permit"]
        cr = self.env.cr
        if not leaving:
            return 0
        allowed = max(DELIST_ALWAYS_ALLOWED, listed * percent // 100)
        if leaving > allowed:
            self._note_list_incomplete(config, log, leaving, listed, percent)
            return 0
        today = config._today()
        cr.execute(
            SQL(
                """UPDATE sicantik_permit SET delisted_date = %s
                    WHERE config_id = %s AND delisted_date IS NULL
                      AND missed_passes >= %s
                RETURNING id""",
                today,
                config.id,
                after,
            )
        )
        gone = [row[0] for row in cr.fetchall()]
        Permit.invalidate_model(PRESENCE_COLUMNS)
        cancelled = self._cancel_reminders_of(gone)
        Permit.browse(gone)._post_delisted(today)
        log.sudo().write({"delisted_count": log.delisted_count + len(gone)})
        self._add_log_message(
            log,
            _(
                "%(count)s permit(s) no longer listed by SICANTIK: kept, with "
                "%(cancelled)s queued reminder(s) cancelled.",
                count=len(gone),
                cancelled=cancelled,
            ),
        )
        return len(gone)

    @api.model
    def _cancel_reminders_of(self, permit_ids):
        """Cancel the queued reminders of departed permits (one statement)."""
        if not permit_ids:
            return 0
        Notification = self.env["sicantik.notification"]
        Notification.flush_model()
        self.env.cr.execute(
            SQL(
                """UPDATE sicantik_notification
                      SET state = 'cancelled', failure_reason = %s,
                          write_date = %s, write_uid = %s
                    WHERE permit_id = ANY(%s) AND state = 'queued'""",
                _("The permit is no longer listed by SICANTIK."),
                fields.Datetime.now(),
                self.env.uid,
                permit_ids,
            )
        )
        count = self.env.cr.rowcount
        Notification.invalidate_model()
        return count

    @api.model
    def _add_log_message(self, log, text):
        log.sudo().write({"message": f"{log.message}\n{text}" if log.message else text})
