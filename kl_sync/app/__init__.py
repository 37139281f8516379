"""The app layer: the edges above the pipeline, and the only part of kl_sync that reaches Prefect's
flows (``flows/``) or the local Klaviyo emulator (``kl_sync.emulator``).

- :mod:`.cli`: the ``kl-sync`` command (``python -m kl_sync``).
- :mod:`.demo`: ``make demo``; :mod:`.report`: ``make report`` (the notebooks as HTML).
- :mod:`.clients`: which Klaviyo a run talks to (the real one, or the emulator started for it) and
  which rate limiter keeps count.
- :mod:`.run`: a whole run in this process, without Prefect.
"""
