from . import sicantik_config
from . import sicantik_permit_type
from . import sicantik_permit
from . import sicantik_sync_log
