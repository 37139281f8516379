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

from kl_sync.constants import EMAIL_PATTERN

# Klaviyo's e-mail rule, the one the emulator and the suites apply too: an address this passes is
# one they take, so a bad address is a dead letter here, before sending, never a rejection after.
_EMAIL = re.compile(EMAIL_PATTERN)


def normalize_email(raw: Any) -> str | None:
    """The e-mail as Klaviyo keys it (trimmed, lower-cased), or None when it is not usable."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    return email if _EMAIL.match(email) else None


def email_problem(raw: Any) -> str:
    """What a dead letter says of an e-mail :func:`normalize_email` refused."""
    if raw is None or not str(raw).strip():
        return "no e-mail"
    text = str(raw).strip()
    if not text.isascii():
        return (f"an e-mail Klaviyo does not take, {text!r}: only ASCII addresses are accepted "
                "(write an international domain in punycode, e.g. xn--bcher-kva.de for bücher.de)")
    return f"a malformed e-mail {text!r}"


def clean_name(value: Any) -> str | None:
    """A name with its whitespace folded to single spaces; None when nothing is left."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def store_moment(naive: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A store timestamp (naive, in the store's zone) as the instant it names, written in the local
    time that instant really has.

    Two local times need a rule. One in a DST gap (02:30 on the night clocks jump from 02:00 to
    03:00) never happened on a clock: it is read with the offset before the jump (Python's
    ``fold=0``), i.e. as if the clock had not jumped yet, so it comes out as 03:30 at the new
    offset. One in a DST overlap (01:30 on the night clocks go back) happened twice: it is the first
    of the two. Every step (events, profiles' SignUpDate, backfill) reads times through here."""
    return naive.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz)


def klaviyo_time(naive: dt.datetime, tz: ZoneInfo) -> str:
    """A store timestamp (naive, in the store's zone) as ISO 8601 with its UTC offset
    (:func:`store_moment`: a time in a DST gap comes out as the local time it really is)."""
    return store_moment(naive, tz).isoformat()


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """A time as the state database keeps it: naive UTC (a naive ``moment`` is taken to be UTC)."""
    return moment if moment.tzinfo is None else moment.astimezone(dt.UTC).replace(tzinfo=None)
