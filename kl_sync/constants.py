"""The Klaviyo API kl-sync is built against: its address, its pinned revision, its media type.

Defined here once for the settings (their defaults), the client and the app layer. This module imports
nothing, so cheap commands (``kl-sync status``, ``--help``) can read it without loading the client.
"""

#: Klaviyo's API; a local emulator's URL replaces it in development.
KLAVIYO_BASE_URL = "https://a.klaviyo.com"
#: The API revision kl-sync is built and tested against (the spec slices in kl_sync/emulator/spec/).
KLAVIYO_REVISION = "2026-07-15"
#: JSON:API's media type: every request body and answer.
JSON_API = "application/vnd.api+json"

# Klaviyo's content limits, for every side of kl-sync: the suites (as parameters, kl_sync/quality/validate.py),
# the steps, the client (kl_sync/klaviyo/limits.py) and the emulator's rules all import these, so no side
# can pass what another refuses.
# From the spec (stable.json); where it says KB or MB without saying which, the decimal (smaller)
# reading: a body that fits 100,000 bytes fits 100 KB and 100 KiB alike.

#: "A single string cannot exceed 100KB" (events, profiles).
MAX_STRING_BYTES = 100_000
#: "The maximum allowed payload size per-profile is 100KB" (bulk import; one profile-import body too).
MAX_PROFILE_BYTES = 100_000
#: "The maximum allowed payload size is 5MB" (a bulk body); "The size of the event payload must not
#: exceed 5 MB" (one event).
MAX_BODY_BYTES = 5_000_000
#: Events per bulk-create request, profiles per bulk import, e-mails per suppression request.
MAX_EVENTS_PER_BULK = 1_000
MAX_PROFILES_PER_BULK = 10_000
MAX_EMAILS_PER_SUPPRESSION = 100
#: Profiles one add-to-list request may carry.
MAX_LIST_MEMBERS_PER_REQUEST = 1_000
#: Properties one event may carry.
MAX_EVENT_PROPERTIES = 400
#: A metric name "must be less than 128 characters".
MAX_METRIC_NAME = 127
#: An event time "must be after the year 1990" and "can only be up to 1 year in the future" (days).
EARLIEST_EVENT_YEAR = 1990
LATEST_EVENT_AHEAD_DAYS = 365
#: An e-mail address as Klaviyo takes it: an ASCII local part (RFC 5322 atoms), an @, and an ASCII
#: host name with a letters-only top-level domain, 3 to 254 characters in all. Internationalised
#: addresses (``user@bücher.de``) are refused: punycode them in the store (``xn--bcher-kva.de``).
#: ``\Z``, not ``$``: ``$`` would accept a trailing newline.
EMAIL_PATTERN = (
    r"^(?=.{3,254}\Z)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\Z"
)

# kl-sync's own limits on what it queues (Klaviyo documents none; these keep a poison row from
# crashing a step or an encoder, and no real store value comes near them).

#: Levels of nested objects and arrays a payload may have (Python's recursive encoders fail near 1,000).
MAX_JSON_DEPTH = 64
#: Integers beyond 64 bits are refused: JSON numbers travel as doubles or 64-bit integers downstream.
MAX_JSON_INT = 2**63 - 1
