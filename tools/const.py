"""Constants of the SICANTIK API client: defaults, endpoint names, status tables.

Everything the client decides from a table lives here, not inside methods, so the
rules can be read in one place. The server's behaviour behind these values is
described in the project's SICANTIK API reference (``sicantik-api.md``).
"""

# --------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------
ADDON_VERSION = "18.0.1.3.0"
USER_AGENT = f"sicantik_connector/{ADDON_VERSION} (+Odoo 18)"

# --------------------------------------------------------------------------
# Client defaults (all overridable through ``SicantikApi(...)`` arguments)
# --------------------------------------------------------------------------
DEFAULT_TIMEOUT = (5, 30)  # (connect, read) seconds; read is per socket read
DEFAULT_RATE_LIMIT = 10.0  # requests per second, prior art's agreed pace
DEFAULT_MAX_WORKERS = 4
DEFAULT_MAX_RETRIES = 3  # retries after the first attempt
DEFAULT_BACKOFF_BASE = 0.5  # seconds; full jitter in [0, base * 2**(n-1)]
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_RETRY_AFTER_CAP = 60.0  # a longer Retry-After is handed to the scheduler
DEFAULT_MAX_PAGES = 5000
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # decoded body size cap
DEFAULT_PAGE_SIZE = 50  # older docs recommend at most 50 rows per request

# The server counts arrivals, and the delays between our send times and its
# clock can bring two requests closer together than we sent them. The client
# paces itself at ``rate_limit * (1 - RATE_SAFETY_MARGIN)``: with 10 req/s that
# spaces requests 103 ms apart, so eleven consecutive requests span 1.03 s and
# the server only sees eleven inside one second when the first one was delayed
# 30 ms more than the eleventh. Throughput stays at 97 % of the agreed rate.
# See ``rate_limiter.py`` for why spacing is measured on the actual release
# times (late thread wake-ups never compress the spacing).
RATE_SAFETY_MARGIN = 0.03
# In window terms: ``rate`` + 1 requests span at least ``1 / (1 - margin)``
# seconds of send time, so the server counts at most ``rate`` in any 1 s window
# as long as two requests' slot-to-arrival delays differ by less than
# ``margin / (1 - margin)`` seconds: 30.9 ms with 3 %.
#
# Both limiters hand out send times (slots). The client's own lateness is
# bounded at the send itself: right before a request's first byte is written,
# once its connection exists (DNS, TCP connect, TLS handshake done), the send
# gate (``http_guard.SendGate``, ``confirm()`` of the limiters) drops a slot
# older than this and waits for a new one; the PostgreSQL limiter also drops a
# slot its thread wakes up for this late. So a request leaves at most this long
# after its slot, and the rest of the 30.9 ms (about 21 ms) is for what comes
# after the write: the network and the server's own scheduling.
LATE_SLOT_TOLERANCE_S = 0.010
# The PostgreSQL limiter: how long one claim may wait for the database, how
# long a process keeps trying (then it raises; it never sends unpaced), and the
# pause between two tries.
LIMITER_STATEMENT_TIMEOUT_MS = 2000
LIMITER_UNREACHABLE_GIVE_UP_S = 60.0
LIMITER_RECONNECT_PAUSE_S = 0.5

# Adaptive pace (``adaptive_pace.py``): AIMD on a fraction of the rate.
CONGESTION_STATUSES = frozenset({429, 503})
PACE_FLOOR = 0.2  # never below a fifth of the configured rate
PACE_DECREASE = 0.5  # multiplicative decrease on a congestion signal
PACE_HOLD_S = 2.0  # one decrease per event; no recovery during the hold
PACE_RECOVERY_PER_S = 0.05  # additive increase: 1/2 -> 1 in 10 s
LATENCY_CLIMB_FACTOR = 2.0  # average latency above twice its usual level ...
LATENCY_CLIMB_MIN_S = 0.25  # ... and at least this much above it

# Read the body in chunks of this size (raw, before decompression).
READ_CHUNK_BYTES = 64 * 1024

# A logical call (one request and its retries) ends within its call deadline
# plus this: the time a thread takes to wake up, see its socket shut down by
# the deadline watchdog and unwind (see ``http_core.Guard``).
DEADLINE_MARGIN = 0.5  # seconds

# --------------------------------------------------------------------------
# Outbound address policy (``addresses.py``)
# --------------------------------------------------------------------------
# The system parameter in which an administrator lists the hosts, IPs and
# networks (CIDR) the addon may reach although they are not public.
ALLOWED_HOSTS_PARAM = "sicantik_connector.allowed_hosts"
# Cloud metadata services: refused unless listed one by one.
METADATA_ADDRESSES = (
    "169.254.169.254",  # AWS, GCP, Azure IMDS, DigitalOcean, OpenStack...
    "169.254.170.2",  # AWS ECS task metadata
    "169.254.169.123",  # AWS time sync
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # AWS DNS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure wire server (a public-looking address)
    "192.0.0.192",  # Oracle Cloud
)

# --------------------------------------------------------------------------
# Remote endpoints (method names of the CodeIgniter REST controller)
# --------------------------------------------------------------------------
EP_COUNT_PERMIT_TYPES = "jumlahPerizinan"
EP_PERMIT_TYPES = "jenisperizinanlist"
EP_ISSUED_PERMITS = "listpermohonanterbit"
EP_PERMIT_DETAILS = "cekperizinan"

# Asking for JSON: both switches, the server honours either one.
JSON_QUERY = {"format": "json"}
ACCEPT_JSON = "application/json"
ACCEPT_XML = "application/xml"
RESPONSE_FORMATS = ("json", "xml")

# --------------------------------------------------------------------------
# Response conventions
# --------------------------------------------------------------------------
# 404 + this text = nothing found / end of a paginated list (two dots).
NO_DATA_MARKER = "Tidak ada data"
# 404 + this text = the method does not exist (wrong base URL or endpoint).
UNKNOWN_METHOD_MARKER = "Unknown method"

# Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Statuses that mean "you may not": configuration, not data.
ACCESS_DENIED_STATUSES = frozenset({401, 403, 407})
# 5xx that no retry can fix.
PERMANENT_SERVER_STATUSES = frozenset({501, 505})

# Content encodings the client decodes itself (bounded decompression).
ACCEPT_ENCODING = "gzip"
SUPPORTED_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})

# --------------------------------------------------------------------------
# Error classification (``SicantikError.failure_type`` / ``.scope``)
# --------------------------------------------------------------------------
FT_CONFIG = "config"
FT_TIMEOUT = "timeout"
FT_CONNECTION = "connection"
FT_TLS = "tls"
FT_SERVER = "server"
FT_RATE_LIMITED = "rate_limited"
FT_BAD_REQUEST = "bad_request"
FT_NOT_FOUND = "not_found"
FT_BAD_RESPONSE = "bad_response"
FT_TOO_LARGE = "too_large"
FT_DATA = "data"
FAILURE_TYPES = (
    FT_CONFIG,
    FT_TIMEOUT,
    FT_CONNECTION,
    FT_TLS,
    FT_SERVER,
    FT_RATE_LIMITED,
    FT_BAD_REQUEST,
    FT_NOT_FOUND,
    FT_BAD_RESPONSE,
    FT_TOO_LARGE,
    FT_DATA,
)

SCOPE_RECORD = "record"  # one permit is affected, carry on with the others
SCOPE_SYSTEM = "system"  # configuration, network or server: stop the run
SCOPES = (SCOPE_RECORD, SCOPE_SYSTEM)

# fetch_permit_details: this many permits in a row with a record-scope failure
# (each already retried) means the server is broken, not the permits: stop.
MAX_RECORD_FAILURES_IN_A_ROW = 10

# On a per-permit endpoint these failures concern that permit only; every
# other failure (network, server, rate limit, configuration) is systemic.
RECORD_FAILURE_TYPES = frozenset({FT_BAD_RESPONSE, FT_TOO_LARGE, FT_DATA})

# --------------------------------------------------------------------------
# Record normalisation
# --------------------------------------------------------------------------
ZERO_DATE = "0000-00-00"  # legacy MySQL zero date
# Examples of values that carry no information (seen in production: '0').
# The rule that decides is ``placeholders.is_placeholder``, which covers
# these and every other spelling of "nothing".
JUNK_NAMES = frozenset({"", "0", "-"})
PENDAFTARAN_ID_LENGTH = 16
