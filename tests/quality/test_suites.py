"""The suite files themselves: one per outbox kind, loadable by GX, diff-clean, rows-mappable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kl_sync import quality
from kl_sync.kinds import OUTBOX_KINDS
from kl_sync.quality.validate import LIMITS


def test_every_outbox_kind_has_a_suite() -> None:
    missing = [kind for kind in OUTBOX_KINDS if not quality.suite_path(kind).is_file()]
    assert not missing, f"outbox kinds without expectations/<kind>.json: {missing}"


def test_every_suite_belongs_to_an_outbox_kind() -> None:
    strays = sorted(path.stem for path in quality.SUITES_DIR.glob("*.json") if path.stem not in OUTBOX_KINDS)
    assert not strays, f"suites for kinds kl_sync.payloads does not know: {strays}"


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_suite_file_loads_with_gx(kind: str) -> None:
    import great_expectations as gx
    from great_expectations.expectations.expectation import ColumnMapExpectation

    with quality.suite_path(kind).open(encoding="utf-8") as handle:
        body = json.load(handle)
    suite = gx.ExpectationSuite(**body)

    assert suite.name == kind
    assert suite.expectations, f"{kind}: the suite expects nothing"
    names = [quality.expectation_name(e.configuration.type, e.configuration.kwargs) for e in suite.expectations]
    assert len(names) == len(set(names)), f"{kind}: an expectation appears twice"
    assert all(isinstance(e, ColumnMapExpectation) for e in suite.expectations)
    # Saved from to_json_dict() before any context touched it: no random ids, so diffs stay readable.
    assert body.get("id") is None
    assert all(expectation.get("id") is None for expectation in body["expectations"])
    assert all(expectation.get("notes") for expectation in body["expectations"]), f"{kind}: say why each rule exists"


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_email_patterns_are_anchored(kind: str) -> None:
    body = quality.load_suite_dict(kind)
    regex_type = "expect_column_values_to_match_regex"
    patterns = [e["kwargs"]["regex"] for e in body["expectations"] if e["type"] == regex_type]
    assert patterns
    for pattern in patterns:
        # A run-time parameter (the e-mail rule every side shares) is checked as the suites get it.
        if isinstance(pattern, dict):
            pattern = LIMITS[pattern["$PARAMETER"]]
        assert pattern.startswith("^") and pattern.endswith("\\Z"), pattern


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_the_suites_take_klaviyos_limits_from_the_one_place_every_side_uses(kind: str) -> None:
    """No suite hard-codes a size or the e-mail rule: they are parameters (kl_sync/constants.py), so
    the suites, the client and the emulator cannot disagree (a 101,000-byte string once passed here
    at 102,400 and was refused by the emulator at 100,000)."""
    for expectation in quality.load_suite_dict(kind)["expectations"]:
        kwargs = expectation["kwargs"]
        if kwargs.get("column") in {"email", "max_string_bytes", "payload_bytes"} and expectation["type"] != "expect_column_values_to_not_be_null":
            bound = kwargs.get("regex", kwargs.get("max_value"))
            assert isinstance(bound, dict) and bound["$PARAMETER"] in LIMITS, expectation


def test_importing_quality_does_not_import_great_expectations() -> None:
    probe = "import sys, kl_sync.quality; print('great_expectations' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


_FORMATS_PROBE = """
import json, sys
{setup}
import jsonschema
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
samples = ["https://shop.example.com/ä?q=1", "not an iri ::", "a b", "/relative/ö", "", "http://[::1]/"]
print(json.dumps({{
    "formats": {{draft: sorted(getattr(jsonschema, draft).FORMAT_CHECKER.checkers)
                for draft in ("Draft7Validator", "Draft201909Validator", "Draft202012Validator")}},
    "iri": [[checker.conforms(value, form) for form in ("iri", "iri-reference")] for value in samples],
    "real": sys.modules["rfc3987_syntax"].__file__ is not None,
}}))
"""


def _probe(setup: str) -> dict:
    code = _FORMATS_PROBE.format(setup=setup)
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_the_engine_defers_what_validation_does_not_use_and_jsonschema_keeps_every_format_check() -> None:
    """Building the engine runs neither altair's body nor rfc3987_syntax's (its Lark grammar); jsonschema
    still has every format checker a plain import gives it, and its iri checks answer the same."""
    plain = _probe("")
    deferred = _probe("from kl_sync.quality.suites import engine; engine()")
    assert deferred["formats"] == plain["formats"]
    assert "iri" in deferred["formats"]["Draft7Validator"]
    assert deferred["iri"] == plain["iri"]
    assert deferred["real"]  # the first iri checked imported the real module


def test_the_engine_leaves_altair_scipy_stats_and_rfc3987_syntax_unrun_until_used() -> None:
    probe = ("import sys; from kl_sync.quality.suites import engine; engine(); "
             "names = ('altair.vegalite', 'scipy.stats._stats_py', 'rfc3987_syntax'); "
             "ran = lambda: [name in sys.modules for name in names]; "
             "print(*ran()); "
             "from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as m; "
             "print(m.alt.Chart.__name__, round(m.stats.entropy([0.5, 0.5]), 3), *ran(), "
             "type(sys.modules['altair']).__name__, type(sys.modules['scipy.stats']).__name__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "Chart", "0.693", "True", "True", "False", "module", "module"]


def test_an_installed_package_finds_its_suites(tmp_path) -> None:
    """What setuptools installs (build_py: a wheel's contents) holds every kind's suite, and
    kl_sync.quality run from there loads them, with no checkout beside it."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    for name in ("kl_sync", "flows"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    installed = tmp_path / "installed"
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                    "--build-lib", str(installed)], cwd=source, check=True, capture_output=True)
    assert sorted(p.stem for p in (installed / "kl_sync" / "expectations").glob("*.json")) == sorted(OUTBOX_KINDS)

    probe = ("import kl_sync.quality as q; from kl_sync.kinds import KINDS; "
             "print(q.SUITES_DIR); print(all(q.load_suite_dict(k)['name'] == k for k in KINDS))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(installed)!r}); {probe}"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(installed / "kl_sync" / "expectations"), "True"]
