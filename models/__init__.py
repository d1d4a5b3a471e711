from . import sicantik_whatsapp_provider
from . import sicantik_config
from . import sicantik_permit_type
from . import sicantik_permit
from . import res_partner
from . import sicantik_notification
from . import sicantik_sync_log
from . import sicantik_dashboard
