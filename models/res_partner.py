import re
from operator import eq, ge, gt, le, lt, ne

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools.phone import normalize_phone
from .access import ensure_manager

# The comparisons a search on the permit count accepts: Python's, and SQL's.
COUNT_OPERATORS = {
    "=": (eq, SQL("=")),
    "!=": (ne, SQL("<>")),
    ">": (gt, SQL(">")),
    ">=": (ge, SQL(">=")),
    "<": (lt, SQL("<")),
    "<=": (le, SQL("<=")),
}
# tools.phone statuses -> whatsapp_number_state
NUMBER_STATES = {
    "valid_mobile": "valid",
    "landline": "landline",
    "invalid": "invalid",
    "empty": "none",
}
# Written by the sync (as superuser) or by SICANTIK managers only: the key a
# sync adopts a contact by, the checked state of its number, the opt-out.
SYNC_FIELDS = frozenset(
    {
        "sicantik_key",
        "whatsapp_number_state",
        "whatsapp_number_note",
        "whatsapp_number_manual",
        "whatsapp_opt_out",
    }
)


class ResPartner(models.Model):
    """Permit holders: found by a stable SICANTIK key, reachable on WhatsApp."""

    _inherit = "res.partner"

    sicantik_key = fields.Char(
        string="SICANTIK Key",
        readonly=True,
        copy=False,
        index="btree_not_null",
        help="Company tax number (NPWP) or registration id the holder was "
        "created from; a sync finds the holder again by it, never by name.",
    )
    # For SICANTIK users only: reading a contact never needs permit rights.
    sicantik_permit_ids = fields.One2many(
        "sicantik.permit",
        "partner_id",
        string="SICANTIK Permits",
        groups="sicantik_connector.sicantik_connector_group_user",
    )
    whatsapp_number = fields.Char(
        string="WhatsApp Number",
        copy=False,
        tracking=True,
        help="Normalised to the international form (+62…) when saved.",
    )
    whatsapp_number_state = fields.Selection(
        [
            ("valid", "Mobile number"),
            ("landline", "Landline: cannot receive WhatsApp"),
            ("invalid", "Invalid number"),
            ("none", "No number"),
        ],
        string="WhatsApp Number State",
        default="none",
        readonly=True,
        copy=False,
    )
    whatsapp_number_note = fields.Char(readonly=True, copy=False)
    whatsapp_number_manual = fields.Boolean(
        string="Number Set by Staff",
        readonly=True,
        copy=False,
        help="Set when staff entered the number: a sync never replaces it.",
    )
    whatsapp_opt_out = fields.Boolean(
        string="No WhatsApp Reminders",
        tracking=True,
        help="The holder asked not to be contacted on WhatsApp: no reminder "
        "is ever sent to this contact.",
    )

    # --- holders as staff see them (Holders and Numbers to fix menus)
    # Counted over every permit (as superuser) when read, never stored: a
    # stored count rewrote the holder's row whenever a sync linked one of its
    # permits, so two syncs (or a sync and Test Expiry Sync) linking permits
    # of one holder lost PostgreSQL's concurrent-update check, and the loser
    # asked SICANTIK again. Searchable ("contacts with permits").
    sicantik_permit_count = fields.Integer(
        string="Permits",
        compute="_compute_sicantik_permit_count",
        search="_search_sicantik_permit_count",
        groups="sicantik_connector.sicantik_connector_group_user",
    )
    sicantik_phone = fields.Char(
        string="Phone on SICANTIK",
        compute="_compute_sicantik_phone",
        groups="sicantik_connector.sicantik_connector_group_user",
        help="The phone numbers the holder's permits carry on SICANTIK, the "
        "latest first: where a WhatsApp number usually comes from.",
    )

    _sql_constraints = [
        (
            "sicantik_key_unique",
            "UNIQUE(sicantik_key)",
            "Another contact already holds this SICANTIK key.",
        ),
    ]

    @api.depends("sicantik_permit_ids")
    def _compute_sicantik_permit_count(self):
        counts = dict(
            self.env["sicantik.permit"]
            .with_context(active_test=False)
            ._read_group([("partner_id", "in", self.ids)], ["partner_id"], ["__count"])
        )
        for partner in self:
            partner.sicantik_permit_count = counts.get(partner, 0)

    def _search_sicantik_permit_count(self, operator, value):
        compare, sql_operator = COUNT_OPERATORS.get(operator, (None, None))
        if compare is None or isinstance(value, bool) or not isinstance(value, int):
            raise UserError(
                _("Permits can only be compared with a whole number, e.g. > 0.")
            )
        self.env["sicantik.permit"].flush_model(["partner_id"])
        # The holders whose count decides: those it matches, or those it does
        # not when a contact without permits (a count of 0) matches.
        zero_matches = compare(0, value)
        having = SQL("count(*) %s %s", sql_operator, value)
        if zero_matches:
            having = SQL("NOT (%s)", having)
        holders = SQL(
            "(SELECT partner_id FROM sicantik_permit WHERE partner_id IS NOT NULL"
            " GROUP BY partner_id HAVING %s)",
            having,
        )
        return [("id", "not in" if zero_matches else "in", holders)]

    def _compute_sicantik_phone(self):
        # One query for all the contacts shown, never one per contact.
        phones = dict(
            self.env["sicantik.permit"]._read_group(
                [("partner_id", "in", self.ids), ("applicant_phone", "!=", False)],
                ["partner_id"],
                ["applicant_phone:array_agg"],
            )
        )
        for partner in self:
            seen = list(dict.fromkeys(reversed(phones.get(partner) or [])))
            partner.sicantik_phone = ", ".join(seen) or False

    @api.model
    def _whatsapp_number_values(self, raw):
        """Columns for a typed or synced number: E.164 when it is a mobile."""
        result = normalize_phone(raw)
        return {
            "whatsapp_number": result.e164 or (raw or "").strip() or False,
            "whatsapp_number_state": NUMBER_STATES.get(result.status, "invalid"),
            "whatsapp_number_note": self._number_note(result.reason),
        }

    @api.model
    def _number_note(self, reason):
        """``tools.phone`` explains in English (it knows no Odoo); staff read
        the note in the language of whoever stores it: the job's is the
        connector's."""
        if not reason:
            return False
        if match := re.fullmatch(
            r"first mobile number of the (\d+) numbers given", reason
        ):
            return _("first mobile number of the %s numbers given", match[1])
        if match := re.fullmatch(
            r"a landline \(area code (\w+)\) cannot receive WhatsApp", reason
        ):
            return _("a landline (area code %s) cannot receive WhatsApp", match[1])
        known = {
            "no phone number": _("no phone number"),
            "not a phone number": _("not a phone number"),
            "not a valid phone number": _("not a valid phone number"),
            "too short to be a phone number": _("too short to be a phone number"),
            "too long to be a phone number": _("too long to be a phone number"),
            "has the wrong number of digits": _("has the wrong number of digits"),
            "has an unknown country code": _("has an unknown country code"),
            "a landline cannot receive WhatsApp": _(
                "a landline cannot receive WhatsApp"
            ),
            "cannot tell whether this number is a mobile; enter a mobile number": _(
                "cannot tell whether this number is a mobile; enter a mobile number"
            ),
            "a toll-free number cannot receive WhatsApp": _(
                "a toll-free number cannot receive WhatsApp"
            ),
            "a premium-rate number cannot receive WhatsApp": _(
                "a premium-rate number cannot receive WhatsApp"
            ),
            "a shared-cost number cannot receive WhatsApp": _(
                "a shared-cost number cannot receive WhatsApp"
            ),
            "a company hotline number cannot receive WhatsApp": _(
                "a company hotline number cannot receive WhatsApp"
            ),
            "an internet telephony number cannot receive WhatsApp": _(
                "an internet telephony number cannot receive WhatsApp"
            ),
            "a pager number cannot receive WhatsApp": _(
                "a pager number cannot receive WhatsApp"
            ),
        }
        return known.get(reason, reason)

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._sicantik_check_sync_fields(vals)
            if "whatsapp_number" in vals:
                if not self._sicantik_from_sync():
                    vals["whatsapp_number_manual"] = bool(vals["whatsapp_number"])
                vals.update(self._whatsapp_number_values(vals["whatsapp_number"]))
        return super().create(vals_list)

    def write(self, vals):
        self._sicantik_check_sync_fields(vals)
        if "whatsapp_number" in vals:
            # The state always follows the number: a "valid" written beside
            # it never skips the check.
            vals = dict(vals, **self._whatsapp_number_values(vals["whatsapp_number"]))
            if not self._sicantik_from_sync():
                vals["whatsapp_number_manual"] = bool(vals["whatsapp_number"])
        return super().write(vals)

    def _sicantik_from_sync(self):
        """A write by the sync: superuser with the sync's context key (a
        context alone comes from any RPC caller and proves nothing)."""
        return self.env.su and bool(self.env.context.get("sicantik_sync"))

    def _sicantik_check_sync_fields(self, vals):
        if SYNC_FIELDS & set(vals) and not self.env.su:
            ensure_manager(self.env)

    def action_view_sicantik_permits(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_permit_action"
        )
        action["domain"] = [("partner_id", "=", self.id)]
        action["context"] = {"default_partner_id": self.id}
        return action

    @api.model
    def _sicantik_holder_domain(self):
        """Contacts with permits: the Holders menu."""
        return [("sicantik_permit_count", ">", 0)]

    @api.model
    def _sicantik_numbers_to_fix_domain(self):
        """Holders a reminder cannot reach and who did not opt out: no
        number, a landline, or a number flagged invalid (as the 09:00 job
        counts them "without a usable WhatsApp number")."""
        return self._sicantik_holder_domain() + [
            ("whatsapp_number_state", "!=", "valid"),
            ("whatsapp_opt_out", "=", False),
        ]

    def _sicantik_flag_invalid_number(self, reason):
        """A gateway refused the number for good: stop using it until staff
        check it (a new number clears the flag)."""
        self.sudo().with_context(sicantik_sync=True).write(
            {
                "whatsapp_number_state": "invalid",
                "whatsapp_number_note": reason
                or _("The WhatsApp gateway refused this number."),
            }
        )

    def _sicantik_opt_out(self, why):
        """The holders asked to stop: opted out, a note on each contact, and
        their queued reminders cancelled (one write each way)."""
        partners = self.sudo().filtered(lambda p: not p.whatsapp_opt_out)
        if not partners:
            return
        partners.with_context(sicantik_sync=True).write({"whatsapp_opt_out": True})
        self.env["sicantik.notification"].sudo().search(
            [("partner_id", "in", partners.ids), ("state", "=", "queued")]
        ).write(
            {
                "state": "cancelled",
                "failure_reason": _("The holder asked to stop WhatsApp reminders."),
            }
        )
        note = Markup("<p>%s</p>") % _(
            "No more WhatsApp reminders: the holder asked to stop (%(why)s).",
            why=why,
        )
        for partner in partners:
            partner._message_log(body=note)
