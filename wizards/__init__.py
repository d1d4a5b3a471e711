from . import sicantik_config_expiry_sync
from . import sicantik_whatsapp_test_message
