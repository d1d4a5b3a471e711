from . import test_client_in_odoo
from . import test_sicantik_config
from . import test_sicantik_actions
from . import test_sicantik_permit_sync
from . import test_sicantik_expiry_sync
