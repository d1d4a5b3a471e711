import logging

from odoo import _, api, fields, models

from ..tools import expiry
from .bulk_sql import bulk_update

_logger = logging.getLogger(__name__)

# Filters of the permit search view a stat button may open the list with.
PERMIT_FILTERS = ("active_permits", "expired", "critical", "warning", "no_expiry")


def normalise_type_name(name):
    """A type name as the client serves it: whitespace collapsed.

    ``jenisperizinanlist`` and the permit lists can differ in inner spaces
    (``IZIN GANGGUAN  USAHA (HO)``); the client collapses both sides the same
    way, and so does this model.
    """
    return " ".join((name or "").split())


class SicantikPermitType(models.Model):
    """A kind of permit the SICANTIK server issues (``jenisperizinanlist``)."""

    _name = "sicantik.permit.type"
    _description = "SICANTIK Permit Type"
    _inherit = ["sicantik.connector.record"]
    _order = "name, id"

    # --- identity
    name = fields.Char(
        required=True,
        index=True,
        help="Name as SICANTIK serves it, with runs of spaces collapsed: "
        "permits are matched to their type by this name.",
    )
    raw_name = fields.Char(
        string="Name as served", help="The name exactly as SICANTIK served it."
    )
    sicantik_id = fields.Integer(string="SICANTIK ID", index=True)
    group_name = fields.Char(string="Group")
    processing_days = fields.Integer(help="Processing time announced by SICANTIK.")
    active = fields.Boolean(default=True)
    permit_ids = fields.One2many("sicantik.permit", "permit_type_id")

    # --- statistics (one read_group per batch of types)
    permit_count = fields.Integer(string="Permits", compute="_compute_statistics")
    active_count = fields.Integer(
        string="Active Permits", compute="_compute_statistics"
    )
    critical_count = fields.Integer(
        string="Expiring ≤ 30 days", compute="_compute_statistics"
    )
    warning_count = fields.Integer(
        string="Expiring ≤ 60 days",
        compute="_compute_statistics",
        help="Permits expiring within 60 days, those within 30 days included.",
    )
    expired_count = fields.Integer(string="Expired", compute="_compute_statistics")
    no_expiry_count = fields.Integer(
        string="Without expiry date", compute="_compute_statistics"
    )

    _sql_constraints = [
        (
            "name_config_unique",
            "UNIQUE(config_id, name)",
            "A permit type name must be unique per connector.",
        ),
    ]

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    def _compute_statistics(self):
        counts = {
            type_id: dict.fromkeys(
                ("total", "active", "critical", "warning", "expired", "none"), 0
            )
            for type_id in self.ids
        }
        real = self.filtered("id")
        if real:
            groups = self.env["sicantik.permit"]._read_group(
                [("permit_type_id", "in", real.ids)],
                ["permit_type_id", "expiry_state", "status"],
                ["__count"],
            )
            for permit_type, expiry_state, status, count in groups:
                bucket = counts[permit_type.id]
                bucket["total"] += count
                if status == "active":
                    bucket["active"] += count
                # As the "Without expiry date" filter: revoked ones included.
                if expiry_state == expiry.NO_DATE:
                    bucket["none"] += count
                if status == "revoked":
                    continue
                if expiry_state == expiry.CRITICAL:
                    bucket["critical"] += count
                    bucket["warning"] += count
                elif expiry_state == expiry.WARNING:
                    bucket["warning"] += count
                elif expiry_state == expiry.EXPIRED:
                    bucket["expired"] += count
        for permit_type in self:
            bucket = counts.get(permit_type.id) or dict.fromkeys(
                ("total", "active", "critical", "warning", "expired", "none"), 0
            )
            permit_type.permit_count = bucket["total"]
            permit_type.active_count = bucket["active"]
            permit_type.critical_count = bucket["critical"]
            permit_type.warning_count = bucket["warning"]
            permit_type.expired_count = bucket["expired"]
            permit_type.no_expiry_count = bucket["none"]

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_view_permits(self):
        """The type's permits; a stat button names a filter of the permit
        search view in the ``sicantik_permit_filter`` context key."""
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_permit_action"
        )
        action["domain"] = [("permit_type_id", "=", self.id)]
        action["context"] = {"default_permit_type_id": self.id}
        permit_filter = self.env.context.get("sicantik_permit_filter")
        if permit_filter in PERMIT_FILTERS:
            action["context"][f"search_default_{permit_filter}"] = 1
        action["display_name"] = _("Permits: %(type)s", type=self.name)
        return action

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _sync_from_types(self, config, remote_types):
        """Upsert the ``PermitType`` records of ``config`` by normalised name.

        One search, one batched create, one set-based update. Types missing
        from the answer are kept. Returns a dict of counts.
        """
        existing = {
            t.name: t
            for t in self.with_context(active_test=False).search(
                [("config_id", "=", config.id)]
            )
        }
        to_create, to_update = [], {}
        seen = set()
        unchanged = 0
        for remote in remote_types:
            name = normalise_type_name(remote.name)
            if not name or name in seen:
                continue
            seen.add(name)
            current = existing.get(name)
            if current is None:
                to_create.append(
                    {
                        "name": name,
                        "config_id": config.id,
                        "raw_name": remote.raw_name,
                        "sicantik_id": remote.id or 0,
                        "group_name": remote.group or False,
                        "processing_days": remote.processing_days or 0,
                    }
                )
                continue
            stored = {
                "raw_name": current.raw_name,
                "sicantik_id": current.sicantik_id,
                "group_name": current.group_name,
                "processing_days": current.processing_days,
            }
            # A value missing from the answer never erases a stored one.
            merged = {
                "raw_name": remote.raw_name or current.raw_name,
                "sicantik_id": remote.id or current.sicantik_id,
                "group_name": remote.group or current.group_name,
                "processing_days": current.processing_days
                if remote.processing_days is None
                else remote.processing_days,
            }
            if merged != stored:
                to_update[current.id] = merged
            else:
                unchanged += 1
        if to_create:
            self.create(to_create)
        if to_update:
            self.flush_model()
            bulk_update(self, to_update)
            self.invalidate_model()
        return {
            "fetched": len(remote_types),
            "created": len(to_create),
            "updated": len(to_update),
            "unchanged": unchanged,
        }

    @api.model
    def _get_type_map(self, config):
        """{normalised name: id} of the types of ``config`` (one query)."""
        self.env.cr.execute(
            "SELECT name, id FROM sicantik_permit_type WHERE config_id = %s",
            (config.id,),
        )
        return dict(self.env.cr.fetchall())

    @api.model
    def _ensure_types(self, config, names, type_map):
        """Create the types the permit list names but the type list lacks.

        Rare (types are synced at the start of every pass); batched.
        """
        missing = sorted({n for n in names if n and n not in type_map})
        if not missing:
            return type_map
        _logger.warning(
            "SICANTIK %s (id %s): permit types not in jenisperizinanlist, "
            "created from the permit list: %s",
            config.name,
            config.id,
            ", ".join(missing),
        )
        created = self.create(
            [
                {"name": name, "raw_name": name, "config_id": config.id}
                for name in missing
            ]
        )
        type_map.update({t.name: t.id for t in created})
        return type_map
