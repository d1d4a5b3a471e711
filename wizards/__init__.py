from . import sicantik_config_expiry_sync
