{
    "name": "SICANTIK Connector",
    "summary": "Sync issued permits from SICANTIK, track their expiry dates "
    "and remind permit holders on WhatsApp",
    "version": "18.0.1.1.0",
    "category": "Services",
    "author": "SICANTIK Connector contributors",
    "license": "LGPL-3",
    # OCA's scale: a first release, proven in tests but not yet in an office.
    "development_status": "Beta",
    "depends": ["base", "mail"],
    "external_dependencies": {"python": ["requests", "phonenumbers"]},
    "data": [
        "security/sicantik_connector_groups.xml",
        "security/ir.model.access.csv",
        "security/sicantik_connector_security.xml",
        "data/ir_config_parameter_data.xml",
        "data/res_lang_data.xml",
        "data/sicantik_whatsapp_provider_data.xml",
        "data/sicantik_config_data.xml",
        "data/ir_cron_data.xml",
        "views/sicantik_config_views.xml",
        "views/sicantik_permit_type_views.xml",
        "views/sicantik_permit_views.xml",
        "views/sicantik_sync_log_views.xml",
        "views/sicantik_dashboard_views.xml",
        "views/sicantik_whatsapp_provider_views.xml",
        "views/sicantik_notification_views.xml",
        "views/res_partner_views.xml",
        "wizards/sicantik_config_expiry_sync_views.xml",
        "wizards/sicantik_whatsapp_test_message_views.xml",
        "views/sicantik_connector_menus.xml",
    ],
    "demo": [
        "data/sicantik_config_demo.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "sicantik_connector/static/src/dashboard/**/*",
            "sicantik_connector/static/src/sync_log/**/*",
        ],
        "web.assets_tests": [
            "sicantik_connector/static/tests/tours/**/*",
        ],
    },
    "images": ["static/description/dashboard.png"],
    "application": True,
    "installable": True,
}
