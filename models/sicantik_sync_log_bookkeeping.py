"""The sync log as the register of each connector's jobs.

Beyond the row one run writes for itself (``sicantik.sync.log``): whether a
job already runs for a connector, with the notice or the refusal a second
start gets, and the rows recorded for a run that could not write its own:
the schedule skipping an untested address, a failure kept in a transaction
of its own, an unexpected error. ``sicantik.sync.log`` inherits it (same
table, no field of its own).
"""

from datetime import timedelta

from odoo import _, api, fields, models


class SicantikSyncLogBookkeeping(models.AbstractModel):
    """The per connector and job bookkeeping of the sync logs (see the
    module docstring). Meant for ``sicantik.sync.log`` only."""

    _name = "sicantik.sync.log.bookkeeping"
    _description = "SICANTIK Sync Log Bookkeeping"

    # ------------------------------------------------------------
    # RUNNING JOBS
    # ------------------------------------------------------------

    @api.model
    def _running_for(self, config, operation):
        """The ``running`` rows of ``operation`` on ``config`` whose process
        is alive (a permit sync's type step counts as the permit sync)."""
        operations = (
            ["permits", "permit_types"] if operation == "permits" else [operation]
        )
        logs = self.sudo().search(
            [
                ("config_id", "in", config.ids),
                ("operation", "in", operations),
                ("state", "=", "running"),
            ]
        )
        now = fields.Datetime.now()
        return logs.filtered(lambda log: log._is_alive(now))

    @api.model
    def _running_notification(self, config, operation):
        """A friendly notice (not an error) when ``operation`` already runs
        for ``config``, with a link to its log; False when it does not."""
        running = self._running_for(config, operation)
        if not running:
            return False
        log = running[0]
        job = dict(log._fields["operation"]._description_selection(self.env))[
            log.operation
        ]
        return log._notification_action(
            _(
                "The %(job)s run of %(name)s started %(start)s and is still "
                "working (last progress %(beat)s). Nothing new was started: "
                "follow it in its log %%s.",
                job=job.lower(),
                name=config.display_name,
                start=self._when_text(log.start_date),
                beat=self._when_text(log.heartbeat),
            ),
            "warning",
            _("Already running"),
        )

    # ------------------------------------------------------------
    # ROWS FOR RUNS THAT COULD NOT WRITE THEIR OWN
    # ------------------------------------------------------------

    @api.model
    def _note_untested_address(self, config, operation):
        """A failed row saying the schedule skips ``config``'s untested
        address: at most one a day per connector and job, not one per run."""
        since = fields.Datetime.now() - timedelta(days=1)
        if self.sudo().search_count(
            [
                ("config_id", "=", config.id),
                ("operation", "=", operation),
                ("failure_type", "=", "untested"),
                ("start_date", ">=", since),
            ],
            limit=1,
        ):
            return self.sudo()
        log = self._start(config, operation)
        log._set_failure(
            "untested",
            # No address here: an old one may hold a secret in its query.
            _(
                "Last passed test of an API URL: %(when)s.",
                when=self._when_text(config.tested_ok_at)
                if config.tested_ok_at
                else _("never"),
            ),
        )
        return log._finish("failed")

    @api.model
    def _log_failure_separately(self, config, operation, trigger, err, stats=None):
        """Record a failed run in its own transaction, so that it stays logged
        although the action raises (and rolls back) to show the error."""
        lang = config.lang or self.env.lang
        with self.env.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {"lang": lang})(su=True)
            log = env["sicantik.sync.log"]._start(
                env["sicantik.config"].browse(config.id), operation, trigger
            )
            if stats:
                log._add_client_stats(stats)
            log._set_failure(err.failure_type, str(err))
            log._finish("failed")

    @api.model
    def _close_internal_error(self, config, operation, log, detail):
        """Close the running row of ``operation`` (or a new one) after an
        unexpected error, with its traceback (start and end) for managers."""
        log = log or self.sudo()._start(config, operation)
        if len(detail) > 4000:
            # The first exception is the cause; what follows it is often only
            # "current transaction is aborted".
            detail = f"{detail[:1500]}\n[…]\n{detail[-2500:]}"
        log._set_failure("internal", detail)
        log._finish()
