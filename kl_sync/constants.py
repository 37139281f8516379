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
