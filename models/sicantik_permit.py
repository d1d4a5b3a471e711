from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.tools import SQL, format_date
from odoo.tools.sql import create_unique_index

from ..tools import expiry
from .access import ensure_manager


class SicantikPermit(models.Model):
    """An issued permit, as listed by SICANTIK, with its expiry date.

    One permit is one letter (``no_surat``) of one registration
    (``pendaftaran_id``) of one connector: a registration with two letters
    has two permits, each with its own expiry date and reminders (and the
    same holder). A letter SICANTIK leaves empty is the permit
    (registration, no letter), stored once, apart from the lettered ones.
    """

    _name = "sicantik.permit"
    _description = "SICANTIK Permit"
    _inherit = ["mail.thread", "mail.activity.mixin", "sicantik.connector.record"]
    _order = "id desc"
    _rec_names_search = ["no_surat", "pendaftaran_id", "applicant_name"]
    _check_company_auto = True
    # Staff (read-only on permits) log notes and plan activities on them.
    _mail_post_access = "read"

    # --- identity (from the permit list)
    pendaftaran_id = fields.Char(
        string="Registration ID",
        required=True,
        readonly=True,
        tracking=True,
        help="SICANTIK's registration number. With the permit number, the "
        "key of a permit: a registration can carry two permit letters.",
    )
    no_surat = fields.Char(
        string="Permit Number",
        index="trigram",
        readonly=True,
        tracking=True,
        help="The permit letter's number, exactly as SICANTIK lists it.",
    )
    applicant_name = fields.Char(index="trigram", tracking=True)
    permit_type_id = fields.Many2one(
        "sicantik.permit.type",
        string="Permit Type",
        index=True,
        ondelete="restrict",
        tracking=True,
        check_company=True,
    )
    permit_type_name = fields.Char(
        string="Type as listed", help="The type name the permit list gave."
    )

    # --- details (from cekperizinan)
    partner_id = fields.Many2one(
        "res.partner",
        string="Holder",
        index="btree_not_null",
        tracking=True,
        ondelete="set null",
        check_company=True,
        help="The contact reminders go to; linked by a stable key (NPWP or "
        "registration id) once SICANTIK gave the permit's details.",
    )
    received_date = fields.Date()
    issue_date = fields.Date()
    applicant_address = fields.Char()
    applicant_phone = fields.Char()
    company_name = fields.Char()
    npwp = fields.Char(string="NPWP")
    company_address = fields.Char()
    kelurahan = fields.Char(string="Village")
    kecamatan = fields.Char(string="District")

    # --- expiry
    expiry_date = fields.Date(index=True, tracking=True)
    expiry_unlimited = fields.Boolean(
        string="No Expiry",
        tracking=True,
        help="SICANTIK gives the zero date: valid as long as the business runs.",
    )
    expiry_source = fields.Selection(
        [
            ("list", "Permit list"),
            ("cekperizinan", "Permit details (cekperizinan)"),
            ("manual", "Entered by hand"),
        ],
        readonly=True,
    )
    expiry_obtained_at = fields.Datetime(string="Expiry Obtained", readonly=True)
    days_to_expiry = fields.Integer(compute="_compute_days_to_expiry")
    expiry_state = fields.Selection(
        [
            ("expired", "Expired"),
            ("critical", "Critical (≤ 30 days)"),
            ("warning", "Warning (≤ 60 days)"),
            ("ok", "OK"),
            ("none", "No expiry date"),
        ],
        compute="_compute_expiry_state",
        store=True,
        precompute=True,
        index=True,
        help="Recomputed for every permit each night at 00:00.",
    )
    status = fields.Selection(
        [
            ("active", "Active"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
            ("unknown", "Unknown"),
        ],
        compute="_compute_status",
        store=True,
        precompute=True,
        readonly=False,
        index=True,
        tracking=True,
        help="Revoked is set by staff and never changed by a sync.",
    )

    # --- expiry check bookkeeping
    expiry_check_state = fields.Selection(
        [
            ("pending", "Not checked yet"),
            ("found", "Date found"),
            ("no_date", "No date on SICANTIK"),
            ("unavailable", "Not available (no company)"),
            ("error", "Error"),
        ],
        default="pending",
        readonly=True,
        index=True,
    )
    next_expiry_check = fields.Datetime(
        index=True,
        readonly=True,
        help="When the expiry sync asks SICANTIK about this permit again "
        "(empty: never, the permit list carries the date).",
    )
    expiry_checked_at = fields.Datetime(string="Last Expiry Check", readonly=True)
    expiry_check_attempts = fields.Integer(readonly=True)
    expiry_check_error = fields.Char(readonly=True)

    # --- presence on the permit list (written by the permit sync only)
    delisted_date = fields.Date(
        string="No longer listed by SICANTIK since",
        index="btree_not_null",
        readonly=True,
        copy=False,
        help="Set when complete passes of the permit sync no longer found the "
        "permit on SICANTIK's list (withdrawn or deleted there). The permit "
        "is kept and gets no more reminders; cleared when it is listed again.",
    )
    listed_pass = fields.Datetime(
        string="Last Listed",
        readonly=True,
        copy=False,
        help="Start of the last permit-sync pass that found the permit on "
        "SICANTIK's list.",
    )
    missed_passes = fields.Integer(
        readonly=True,
        copy=False,
        help="Complete passes in a row that did not find the permit on the list.",
    )

    # One permit per connector, registration and letter; a permit without a
    # letter counts as the letter "". A unique index on an expression (see
    # init()): a UNIQUE constraint would let any number of NULL letters in.
    _sql_constraints = [
        (
            "letter_unique",
            "",
            "A permit letter must be unique per connector and registration.",
        ),
    ]

    def init(self):
        res = super().init()
        create_unique_index(
            self.env.cr,
            "sicantik_permit_letter_unique",
            self._table,
            ["config_id", "pendaftaran_id", "COALESCE(no_surat, '')"],
        )
        return res

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("no_surat", "pendaftaran_id", "applicant_name")
    def _compute_display_name(self):
        for permit in self:
            number = permit.no_surat or permit.pendaftaran_id or ""
            permit.display_name = (
                f"{number} ({permit.applicant_name})"
                if permit.applicant_name
                else number
            )

    @api.depends("expiry_date")
    @api.depends_context("tz")
    def _compute_days_to_expiry(self):
        todays = self._today_by_config()
        for permit in self:
            if permit.expiry_date:
                today = todays[permit.config_id.id]
                permit.days_to_expiry = (permit.expiry_date - today).days
            else:
                permit.days_to_expiry = 0

    @api.depends("expiry_date", "expiry_unlimited")
    def _compute_expiry_state(self):
        todays = self._today_by_config()
        for permit in self:
            permit.expiry_state = expiry.state_for(
                permit.expiry_date,
                permit.expiry_unlimited,
                todays[permit.config_id.id],
            )

    @api.depends("expiry_state")
    def _compute_status(self):
        for permit in self:
            permit.status = expiry.status_for(permit.expiry_state, permit.status)

    # ------------------------------------------------------------
    # CRUD METHODS
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        now = fields.Datetime.now()
        for vals in vals_list:
            if vals.get("expiry_date") or vals.get("expiry_unlimited"):
                vals.setdefault("expiry_source", "manual")
                vals.setdefault("expiry_obtained_at", now)
                vals.setdefault("expiry_check_state", "found")
            else:
                vals.setdefault("next_expiry_check", now)
        return super().create(vals_list)

    def write(self, vals):
        if ("expiry_date" in vals or "expiry_unlimited" in vals) and not (
            self.env.context.get("sicantik_sync")
        ):
            # Staff entered the date: say so, and stop asking SICANTIK soon.
            vals = dict(vals, expiry_source="manual")
            vals.setdefault("expiry_obtained_at", fields.Datetime.now())
        return super().write(vals)

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_revoke(self):
        ensure_manager(self.env, self)
        self.write({"status": "revoked"})
        return True

    def action_restore(self):
        ensure_manager(self.env, self)
        todays = self._today_by_config()
        for permit in self.filtered(lambda p: p.status == "revoked"):
            state = expiry.state_for(
                permit.expiry_date,
                permit.expiry_unlimited,
                todays[permit.config_id.id],
            )
            permit.status = expiry.status_for(state)
        return True

    def action_check_expiry_now(self):
        """Ask the expiry sync to check these permits at its next run."""
        ensure_manager(self.env, self)
        self.sudo().write(
            {"next_expiry_check": fields.Datetime.now(), "expiry_check_attempts": 0}
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "info",
                "message": _(
                    "%(count)s permit(s) will be checked at the next expiry sync.",
                    count=len(self),
                ),
            },
        }

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    def _today_by_config(self):
        """{config id: today's date in the office's time zone}."""
        todays = {}
        for config in self.config_id:
            todays[config.id] = config._today()
        todays.setdefault(False, fields.Date.context_today(self))
        return todays

    def _post_expiry_changes(self, changes, source_label):
        """Log expiry date changes (renewals) on the permits' chatter.

        A follow-up step, outside the constant-query upsert, only for the
        permits whose known date changed; one batched message creation.
        """
        if not changes:
            return
        bodies = {}
        for permit_id, old_date, new_date in changes:
            if new_date and new_date > old_date:
                text = _(
                    "Renewed: the expiry date moved from %(old)s to %(new)s "
                    "(source: %(origin)s).",
                    old=old_date,
                    new=new_date,
                    origin=source_label,
                )
            else:
                text = _(
                    "The expiry date changed from %(old)s to %(new)s "
                    "(source: %(origin)s).",
                    old=old_date,
                    new=new_date or _("no expiry"),
                    origin=source_label,
                )
            bodies[permit_id] = Markup("<p>%s</p>") % escape(text)
        self.browse(list(bodies)).sudo()._message_log_batch(bodies=bodies)

    def _post_delisted(self, since):
        """Note on each permit's chatter that SICANTIK stopped listing it
        (one batched message creation)."""
        if not self:
            return
        text = _(
            "No longer listed by SICANTIK since %(date)s (withdrawn or deleted "
            "there). The permit is kept; its queued reminders are cancelled "
            "and no new ones are sent while it is not listed.",
            date=format_date(self.env, since),
        )
        body = Markup("<p>%s</p>") % escape(text)
        self.sudo()._message_log_batch(bodies=dict.fromkeys(self.ids, body))

    @api.model
    def _post_listed_again(self, permit_ids):
        """Note on the chatter of permits SICANTIK lists again."""
        if not permit_ids:
            return
        text = _("Listed by SICANTIK again: reminders resume.")
        body = Markup("<p>%s</p>") % escape(text)
        self.browse(permit_ids).sudo()._message_log_batch(
            bodies=dict.fromkeys(permit_ids, body)
        )

    @api.model
    def _update_expiry_states(self, config, today):
        """Recompute expiry state and status of every permit of ``config``
        for ``today``: one set-based UPDATE of the rows that change.

        The CASE expressions are built from ``tools.expiry``, so they cannot
        drift from ``expiry.state_for``. Returns ``(changed, newly_expired)``.
        """
        dated = [state for state in expiry.BANDS if expiry.BANDS[state][1] is not None]
        state_case = SQL(
            "CASE WHEN expiry_unlimited THEN %s WHEN expiry_date IS NULL THEN %s "
            "%s ELSE %s END",
            expiry.OK,
            expiry.NO_DATE,
            SQL(" ").join(
                SQL(
                    "WHEN expiry_date <= %s THEN %s",
                    expiry.date_bounds(state, today)[1],
                    state,
                )
                for state in dated
            ),
            expiry.OK,
        )
        status_case = SQL(
            "CASE WHEN p.status = 'revoked' THEN 'revoked' "
            "ELSE CASE c.state %s END END",
            SQL(" ").join(
                SQL("WHEN %s THEN %s", state, expiry.status_for(state))
                for state in expiry.STATES
            ),
        )
        self.flush_model()
        self.env.cr.execute(
            SQL(
                """
                WITH computed AS (
                    SELECT id, %(state_case)s AS state
                      FROM sicantik_permit
                     WHERE config_id = %(config)s
                ), wanted AS (
                    SELECT c.id, c.state, %(status_case)s AS status
                      FROM computed c
                      JOIN sicantik_permit p ON p.id = c.id
                )
                UPDATE sicantik_permit p
                   SET expiry_state = w.state, status = w.status
                  FROM wanted w
                 WHERE p.id = w.id
                   AND (p.expiry_state IS DISTINCT FROM w.state
                        OR p.status IS DISTINCT FROM w.status)
             RETURNING w.status
                """,
                state_case=state_case,
                status_case=status_case,
                config=config.id,
            )
        )
        statuses = [row[0] for row in self.env.cr.fetchall()]
        self.invalidate_model(["expiry_state", "status"])
        return len(statuses), statuses.count("expired")

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_update_status(self):
        """00:00: recompute expiry state and status of every permit."""
        for config in self.env["sicantik.config"].search([]):
            # In the connector's language, whoever runs the job.
            config = config._with_job_lang()
            self.with_env(config.env)._update_status_and_log(config)

    @api.model
    def _update_status_and_log(self, config):
        log = self.env["sicantik.sync.log"]._start(config, "status")
        changed, expired = self._update_expiry_states(config, config._today())
        log.write({"updated_count": changed, "progress_done": changed})
        log._finish(
            "done",
            _(
                "%(changed)s permit(s) changed state, %(expired)s of them expired.",
                changed=changed,
                expired=expired,
            ),
        )

    # ------------------------------------------------------------
    # HOLDERS
    # ------------------------------------------------------------

    def _link_partners(self):
        """Give each permit its holder contact, found by a stable key (the
        company's NPWP, else the registration id) and created when missing.

        A new contact takes SICANTIK's name, address and phone; an existing one
        only gets a WhatsApp number when it has none and staff never set one.
        """
        Partner = self.env["res.partner"].sudo().with_context(sicantik_sync=True)
        # A permit staff linked to a contact keeps it.
        keyed = {p: p._holder_key() for p in self if not p.partner_id}
        holders = {
            partner.sicantik_key: partner
            for partner in Partner.with_context(active_test=False).search(
                [("sicantik_key", "in", list(set(keyed.values())))]
            )
        }
        missing = {}
        for permit, key in keyed.items():
            if key not in holders and key not in missing:
                missing[key] = permit._holder_values(key)
        if missing:
            for partner in Partner.create(list(missing.values())):
                holders[partner.sicantik_key] = partner
        by_partner = {}
        for permit, key in keyed.items():
            by_partner.setdefault(holders[key], []).append(permit.id)
        for partner, permit_ids in by_partner.items():
            self.browse(permit_ids).write({"partner_id": partner.id})
        for permit in self:
            partner = permit.partner_id.sudo().with_context(sicantik_sync=True)
            if (
                permit.applicant_phone
                and not partner.whatsapp_number
                and not partner.whatsapp_number_manual
            ):
                partner.whatsapp_number = permit.applicant_phone

    def _holder_key(self):
        self.ensure_one()
        digits = "".join(ch for ch in self.npwp or "" if ch.isdigit())
        company = self.company_id.id or 0
        # NPWP has 15 digits (16 since 2024); anything shorter is not one.
        if len(digits) >= 15 and digits.strip("0"):
            return f"{company}:npwp:{digits}"
        return f"{company}:reg:{self.pendaftaran_id}"

    def _holder_values(self, key):
        is_company = ":npwp:" in key and bool(self.company_name)
        name = (self.company_name if is_company else self.applicant_name) or (
            self.pendaftaran_id
        )
        return {
            "name": name,
            "sicantik_key": key,
            "is_company": is_company,
            "company_id": self.company_id.id,
            "street": (self.company_address if is_company else self.applicant_address)
            or False,
            "city": self.kecamatan or False,
            "vat": self.npwp if is_company else False,
            "whatsapp_number": self.applicant_phone or False,
        }
