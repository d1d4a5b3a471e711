from odoo import fields, models


class SicantikConnectorRecord(models.AbstractModel):
    """A record that belongs to one connector, and so to its company.

    Permits, permit types and sync logs take their company from their
    connector: one rule, which the company record rules rely on.
    """

    _name = "sicantik.connector.record"
    _description = "SICANTIK Connector Record"

    config_id = fields.Many2one(
        "sicantik.config",
        string="Connector",
        required=True,
        index=True,
        ondelete="cascade",
    )
    company_id = fields.Many2one(
        related="config_id.company_id", store=True, index=True, readonly=True
    )
