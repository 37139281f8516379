"""Data quality: every outbox payload passes its Great Expectations suite before it reaches Klaviyo.

The suites are plain JSON, one per outbox kind, in ``kl_sync/expectations/<kind>.json`` (package
data, so an installed wheel has them; :attr:`kl_sync.kinds.Kind.suite`). A batch of outbox rows of
one kind is flattened into a DataFrame (:mod:`.flatten`: one row per outbox row, one column per thing
a suite checks) and validated (:mod:`.validate`), and every row comes back either passed or failed
with the names of the expectations it broke (``expect_column_values_to_match_regex(email)``), ready
to be a dead letter's reason (:mod:`.report`). :mod:`.docs` renders GX Data Docs.

Great Expectations costs seconds to import, so it is imported on first use, never at module import;
the context (ephemeral, in memory) and the suites are built once per process and reused.

Every expectation in a suite must be a column map expectation (one verdict per value, so per row).
Expectations whose per-value cost is high (``expect_column_values_to_match_json_schema``: jsonschema
re-checks the schema itself on every call, milliseconds each) are run over the column's distinct
values instead, and each verdict is copied to the rows holding that value; the result is the same,
only cheaper when values repeat (order Items do).
"""

from kl_sync.kinds import SUITES_DIR
from kl_sync.quality.docs import build_data_docs
from kl_sync.quality.flatten import FlatBatch, flatten_batch, scan_payload
from kl_sync.quality.report import UNFLATTENABLE, QualityReport
from kl_sync.quality.suites import PER_DISTINCT_VALUE, QualitySuiteError, expectation_name, load_suite_dict, suite_path
from kl_sync.quality.validate import TIME_HORIZON, validate_batch

__all__ = [
    "PER_DISTINCT_VALUE",
    "SUITES_DIR",
    "TIME_HORIZON",
    "UNFLATTENABLE",
    "FlatBatch",
    "QualityReport",
    "QualitySuiteError",
    "build_data_docs",
    "expectation_name",
    "flatten_batch",
    "load_suite_dict",
    "scan_payload",
    "suite_path",
    "validate_batch",
]
