"""Store values as Klaviyo takes them: e-mail addresses, names, and store time → Klaviyo time (and
any time → the naive UTC kl-sync's state keeps).

The ground floor: the steps, the analysis and the onsite snippets all fold e-mails and names the same
way, so a profile built by the server and one tracked in the browser meet on the same key.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

# Klaviyo rejects addresses without a local part, an @ and a dotted domain; so do we, before sending.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def normalize_email(raw: Any) -> str | None:
    """The e-mail as Klaviyo keys it (trimmed, lower-cased), or None when it is not usable."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    return email if _EMAIL.match(email) else None


def clean_name(value: Any) -> str | None:
    """A name with its whitespace folded to single spaces; None when nothing is left."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def klaviyo_time(naive: dt.datetime, tz: ZoneInfo) -> str:
    """A store timestamp (naive, in the store's zone) as ISO 8601 with its UTC offset."""
    return naive.replace(tzinfo=tz).isoformat()


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """A time as the state database keeps it: naive UTC (a naive ``moment`` is taken to be UTC)."""
    return moment if moment.tzinfo is None else moment.astimezone(dt.UTC).replace(tzinfo=None)
