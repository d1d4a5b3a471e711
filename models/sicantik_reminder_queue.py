"""The 09:00 job: queue the due reminder of every expiring permit.

A mixin of ``sicantik.notification`` (its methods write that model's rows);
the sender job that sends them lives with the model.
"""

import logging
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.tools import SQL

from .bulk_sql import CONCURRENCY_ERRORS

_logger = logging.getLogger(__name__)

SEND_CRON = "sicantik_connector.ir_cron_send_reminders"
QUEUE_CRON = "sicantik_connector.ir_cron_check_expiring"
# After losing a race with another job, the 09:00 job runs again this soon.
QUEUE_RETRY_SECONDS = 30


class SicantikReminderQueue(models.AbstractModel):
    """Queueing of reminders (see the module docstring).

    Meant for ``sicantik.notification`` only.
    """

    _name = "sicantik.reminder.queue"
    _description = "SICANTIK Reminder Queue"

    @api.model
    def _cron_queue_reminders(self):
        """09:00: queue the due reminder of every expiring permit; the sender
        job sends them at the provider's pace."""
        again = False
        for config in self.env["sicantik.config"].search([]):
            # In the connector's language, whoever runs the job.
            config = config._with_job_lang()
            try:
                with self.env.cr.savepoint():
                    self.with_env(config.env)._queue_and_log(config)
            except CONCURRENCY_ERRORS as err:
                # The sender (or staff) changed a reminder this transaction
                # also writes. Its snapshot cannot see that change, so a new
                # transaction tries again soon: queueing is idempotent. Left
                # to the schedule, the day's reminders would wait a day. (The
                # savepoint's rollback already cleared the cache.)
                _logger.info(
                    "SICANTIK %s (id %s): queueing reminders lost a race with "
                    "another job (%s); it runs again",
                    config.name,
                    config.id,
                    type(err).__name__,
                )
                again = True
        if again:
            self.env.ref(QUEUE_CRON)._trigger(
                at=fields.Datetime.now() + timedelta(seconds=QUEUE_RETRY_SECONDS)
            )
        if self.search_count([("state", "=", "queued")], limit=1):
            self.env.ref(SEND_CRON)._trigger()

    @api.model
    def _queue_and_log(self, config):
        """The 09:00 job for one connector, with its log row."""
        log = self.env["sicantik.sync.log"]._start(config, "notifications")
        counts = self._queue_reminders(config, config._today())
        log.write(
            {
                "fetched_count": counts["queued"]
                + counts["already"]
                + counts["unreachable"]
                + counts["opted_out"],
                "created_count": counts["queued"],
                "unchanged_count": counts["already"],
                "skipped_count": counts["unreachable"] + counts["opted_out"],
                "progress_done": counts["queued"],
            }
        )
        log._finish(
            "done",
            _(
                "%(queued)s reminder(s) queued, %(already)s already queued "
                "earlier, %(unreachable)s holder(s) without a usable WhatsApp "
                "number, %(opted_out)s opted out, %(superseded)s older "
                "reminder(s) overtaken.",
                **counts,
            ),
        )

    @api.model
    def _queue_reminders(self, config, today):
        """Queue the due reminder of every permit of ``config``: one statement.

        Returns counts: queued, already (queued earlier), unreachable (no
        usable number), opted_out, superseded (older stages cancelled).
        """
        stages = list(config._reminder_stages())
        self.env["sicantik.permit"].flush_model()
        self.env["res.partner"].flush_model(
            ["whatsapp_number", "whatsapp_number_state", "whatsapp_opt_out"]
        )
        self.flush_model()
        provider = config._reminder_provider()
        now = fields.Datetime.now()
        due = SQL(
            """
            SELECT p.id AS permit_id, p.partner_id, p.config_id, p.company_id,
                   p.expiry_date,
                   (SELECT min(s) FROM unnest(%(stages)s::int[]) AS s
                     WHERE s >= p.expiry_date - %(today)s::date) AS stage,
                   COALESCE(rp.whatsapp_opt_out, FALSE) AS opted_out,
                   COALESCE(rp.whatsapp_number_state = 'valid', FALSE) AS reachable
              FROM sicantik_permit p
         LEFT JOIN res_partner rp ON rp.id = p.partner_id
             WHERE p.config_id = %(config)s
               AND p.status != 'revoked'
               AND p.delisted_date IS NULL
               AND p.expiry_date BETWEEN %(today)s AND %(last)s
            """,
            stages=stages,
            today=today,
            last=today + timedelta(days=max(stages)),
            config=config.id,
        )
        self.env.cr.execute(
            SQL(
                """
                WITH due AS (%(due)s),
                inserted AS (
                    INSERT INTO sicantik_notification
                           (permit_id, partner_id, config_id, company_id,
                            provider_id, stage, expiry_date, state, next_try,
                            attempts, create_uid, create_date, write_uid,
                            write_date)
                    SELECT permit_id, partner_id, config_id, company_id,
                           %(provider)s, stage, expiry_date, 'queued', %(now)s,
                           0, %(uid)s, %(now)s, %(uid)s, %(now)s
                      FROM due
                     WHERE reachable AND NOT opted_out
                    ON CONFLICT (permit_id, stage, expiry_date) DO NOTHING
                    RETURNING permit_id
                )
                SELECT (SELECT count(*) FROM inserted),
                       count(*) FILTER (WHERE reachable AND NOT opted_out),
                       count(*) FILTER (WHERE NOT reachable AND NOT opted_out),
                       count(*) FILTER (WHERE opted_out)
                  FROM due
                """,
                due=due,
                provider=provider.id or None,
                now=now,
                uid=self.env.uid,
            )
        )
        queued, reachable, unreachable, opted_out = self.env.cr.fetchone()
        superseded = self._cancel_superseded(config)
        self.invalidate_model()
        return {
            "queued": queued,
            "already": reachable - queued,
            "unreachable": unreachable,
            "opted_out": opted_out,
            "superseded": superseded,
        }

    @api.model
    def _cancel_superseded(self, config):
        """A queued stage that a more urgent one has overtaken (the sender was
        down) is cancelled: the holder gets the most urgent message only."""
        self.env.cr.execute(
            SQL(
                """
                UPDATE sicantik_notification n
                   SET state = 'cancelled', failure_reason = %(reason)s,
                       write_date = %(now)s, write_uid = %(uid)s
                 WHERE n.config_id = %(config)s AND n.state = 'queued'
                   AND EXISTS (
                        SELECT 1 FROM sicantik_notification m
                         WHERE m.permit_id = n.permit_id
                           AND m.expiry_date = n.expiry_date
                           AND m.stage < n.stage
                           AND m.state != 'cancelled')
                """,
                reason=_("Overtaken by a more urgent reminder."),
                now=fields.Datetime.now(),
                uid=self.env.uid,
                config=config.id,
            )
        )
        return self.env.cr.rowcount
