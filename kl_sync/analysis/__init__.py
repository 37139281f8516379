"""The analysts' library: loaders, duplicate twins, missed-signup rulesets, list pushes. The notebooks
in ``notebooks/`` only call these and plot."""

from kl_sync.analysis.duplicates import DEFAULT_PAIRS, DEFAULT_WINDOW, DuplicateReport, find_duplicates
from kl_sync.analysis.loaders import find_repo_root, load_customers, load_events, resolve_store_url
from kl_sync.analysis.missed import (
    DEFAULT_RULES,
    INCOMPLETE_SIGNUP,
    NEVER_COMPLETED,
    START_METRICS,
    Rule,
    build_signup_profiles,
    came_back_later,
    find_missed_signups,
    signup_funnel_by_week,
    stalled_more_than,
)
from kl_sync.analysis.push import ListPush, plan_list_push, push_to_list

__all__ = [
    "DEFAULT_PAIRS",
    "DEFAULT_RULES",
    "DEFAULT_WINDOW",
    "INCOMPLETE_SIGNUP",
    "NEVER_COMPLETED",
    "START_METRICS",
    "DuplicateReport",
    "ListPush",
    "Rule",
    "build_signup_profiles",
    "came_back_later",
    "find_duplicates",
    "find_missed_signups",
    "find_repo_root",
    "load_customers",
    "load_events",
    "plan_list_push",
    "push_to_list",
    "resolve_store_url",
    "signup_funnel_by_week",
    "stalled_more_than",
]
