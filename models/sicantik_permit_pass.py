from odoo import api, fields, models


class SicantikPermitPass(models.Model):
    """Where the permit sync's current pass over the permit list stands: one
    row per connector, written after every page.

    Kept off the connector's row on purpose: a page commits about twice a
    second, and a button whose transaction outlives a page (Test Expiry Sync)
    and writes the connector's row would otherwise always lose the race
    (REPEATABLE READ). The connector shows these values through non-stored
    fields (``sync_offset`` ...). Only the permit sync writes this model, as
    superuser and under its run lock.
    """

    _name = "sicantik.permit.pass"
    _description = "SICANTIK Permit Sync Pass"
    _rec_name = "config_id"

    # Not a ``sicantik.connector.record``: a stored company would be
    # rewritten when the connector's company changes, racing the job again.
    config_id = fields.Many2one(
        "sicantik.config",
        string="Connector",
        required=True,
        readonly=True,
        ondelete="cascade",
    )
    next_offset = fields.Integer(
        string="Next Row",
        readonly=True,
        help="Row of the permit list the current pass continues from.",
    )
    page_digest = fields.Char(
        readonly=True,
        help="Digest of the last page read: a server that serves it again for "
        "the next offset is noticed by the next callback too.",
    )
    pass_rows = fields.Integer(
        string="Rows Read", readonly=True, help="Rows read so far in this pass."
    )

    _sql_constraints = [
        (
            "config_unique",
            "UNIQUE(config_id)",
            "A connector has one permit sync pass.",
        ),
    ]

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _for_config(self, config):
        """The pass row of ``config``, created on first use. Called by the
        permit sync under its run lock, so never twice at once."""
        Pass = self.sudo()
        pass_row = Pass.search([("config_id", "=", config.id)], limit=1)
        return pass_row or Pass.create({"config_id": config.id})
