from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from ..tools import reminders


class SicantikReminderSettings(models.AbstractModel):
    """How a connector reminds permit holders: the provider, the ladder of
    stages, the two message templates and the quiet hours.

    Kept apart from the connection settings so each file has one job; the
    connector (``sicantik.config``) inherits it, so the fields live in its
    table.
    """

    _name = "sicantik.reminder.settings"
    _description = "SICANTIK Reminder Settings"

    whatsapp_provider_id = fields.Many2one(
        "sicantik.whatsapp.provider",
        string="WhatsApp Provider",
        default=lambda self: self.env.ref(
            "sicantik_connector.sicantik_whatsapp_provider_log",
            raise_if_not_found=False,
        ),
        ondelete="restrict",
        check_company=True,
        help="The gateway reminders of this connector's permits go through.",
    )
    reminder_stages = fields.Char(
        default=", ".join(str(stage) for stage in reminders.DEFAULT_STAGES),
        required=True,
        help="Days before the expiry date at which the holder is reminded "
        "(0: the day itself). After downtime only the most urgent missed "
        "stage is sent.",
    )
    reminder_template = fields.Text(
        default=reminders.DEFAULT_TEMPLATE,
        required=True,
        help="Placeholders: {holder}, {permit_type}, {permit_number}, "
        "{expiry_date} (dd-mm-yyyy), {days}.",
    )
    reminder_template_today = fields.Text(
        string="Reminder Template (Expiry Day)",
        default=reminders.DEFAULT_TEMPLATE_TODAY,
        required=True,
    )
    quiet_hours_start = fields.Float(
        default=reminders.DEFAULT_QUIET_START,
        help="No reminder is sent from this hour (office time)...",
    )
    quiet_hours_end = fields.Float(
        default=reminders.DEFAULT_QUIET_END,
        help="...until this hour; queued reminders wait. Equal hours: none.",
    )
    whatsapp_stop_words = fields.Char(
        string="Stop Words",
        default="STOP, BERHENTI, unsubscribe",
        help="A WhatsApp reply that is exactly one of these words (any case, "
        "comma separated) opts the holder out of reminders and cancels their "
        "queued ones.",
    )
    notification_count = fields.Integer(
        string="Reminders", compute="_compute_notification_count"
    )

    _sql_constraints = [
        (
            "quiet_hours_range",
            "CHECK(quiet_hours_start >= 0 AND quiet_hours_start < 24 "
            "AND quiet_hours_end >= 0 AND quiet_hours_end < 24)",
            "Quiet hours are hours of the day, from 0 to 23:59.",
        ),
    ]

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    def _compute_notification_count(self):
        counts = dict(
            self.env["sicantik.notification"]._read_group(
                [("config_id", "in", self.ids)], ["config_id"], ["__count"]
            )
        )
        for config in self:
            config.notification_count = counts.get(config, 0)

    # ------------------------------------------------------------
    # CONSTRAINT METHODS
    # ------------------------------------------------------------

    @api.constrains("reminder_stages", "reminder_template", "reminder_template_today")
    def _check_reminder_settings(self):
        for config in self:
            try:
                reminders.parse_stages(config.reminder_stages)
            except reminders.ReminderConfigError as err:
                if err.args[0] is None:
                    raise ValidationError(
                        _("Give at least one reminder stage, e.g. 30, 7, 0.")
                    ) from None
                raise ValidationError(
                    _(
                        "Reminder stages are whole days before expiry, at most "
                        "366; %(part)s is not.",
                        part=err.args[0],
                    )
                ) from None
            for template in (config.reminder_template, config.reminder_template_today):
                unknown = reminders.unknown_placeholders(template)
                if unknown:
                    raise ValidationError(
                        _(
                            "Unknown placeholder(s) %(unknown)s in a reminder "
                            "template; use {holder}, {permit_type}, "
                            "{permit_number}, {expiry_date} or {days}.",
                            unknown=", ".join("{" + name + "}" for name in unknown),
                        )
                    )

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_view_notifications(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_notification_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        return action

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    def _reminder_stages(self):
        self.ensure_one()
        return reminders.parse_stages(self.reminder_stages)

    def _reminder_provider(self):
        """The provider reminders go through (the log-only one by default)."""
        self.ensure_one()
        return (
            self.whatsapp_provider_id
            or self.env.ref(
                "sicantik_connector.sicantik_whatsapp_provider_log",
                raise_if_not_found=False,
            )
            or self.env["sicantik.whatsapp.provider"]
        )

    def _reminder_text(self, stage, values):
        self.ensure_one()
        template = (
            self.reminder_template_today if stage == 0 else self.reminder_template
        )
        return reminders.render(template, values)
