"""Klaviyo's request rules, one module per resource: what a write request asks for, once Klaviyo's
field rules and per-request limits have been applied.

- :mod:`.events`: bulk and single events (metric names, times, property counts, 1,000 a request).
- :mod:`.profiles`: a profile resource (identifiers, e-mail, phone), upserts and bulk imports.
- :mod:`.suppressions`: bulk suppressions (e-mails, or a list).
- :mod:`.lists`: list creation and members.
- :mod:`.common`: reading a body defensively, :class:`~.common.Read`, and :func:`~.common.raise_problems`.

Everything here is pure: a parsed body (already checked against the spec's request schema by
:mod:`kl_sync.emulator.gate`) goes in; write records (:mod:`kl_sync.emulator.storage.writes`) and a
list of :class:`~kl_sync.emulator.errors.Problem` come out. A request with any problem is rejected
whole, with one problem per offending value, each pointing at it
(``/data/attributes/events-bulk-create/data/17/attributes/events/data/0/attributes/time``), so a
client can fail exactly those items and resend the rest. A new endpoint's rule is a ``read_*``
function in its resource's module (an unsuppression's, in :mod:`.suppressions`).
"""
