"""GX Data Docs (HTML) for validations already run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from kl_sync.quality.report import QualityReport
from kl_sync.quality.suites import engine


def build_data_docs(reports: Iterable[QualityReport], folder: Path, *, suites_dir: Path | None = None) -> Path:
    """Write GX Data Docs (HTML) for these reports' validations and the suites into ``folder``.

    Returns the site's ``index.html``. Earlier pages already in ``folder`` stay listed in the index,
    so one folder builds up a history. ``suites_dir`` must be the one the reports were made with.
    """
    gx = engine(suites_dir)  # first: it imports GX without what validation does not use
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    site_name = "kl_sync_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    site = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
    }
    results = [result for report in reports for result in report.validations]
    with gx.lock:
        context = gx.context
        if site_name not in (context.config.data_docs_sites or {}):
            context.add_data_docs_site(site_name, site)
        store = context.validation_results_store
        identifiers = [
            ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=result.meta["run_id"],
                batch_identifier=result.batch_id,  # what ValidationDefinition.run files results by
            )
            for result in results
        ]
        suites = [ExpectationSuiteIdentifier(name=suite.name) for suite in gx.context.suites.all()]
        # The site builder reads results from the context's store: put them there for the build only.
        for identifier, result in zip(identifiers, results):
            store.set(identifier, result)
        try:
            context.build_data_docs(site_names=[site_name], resource_identifiers=[*identifiers, *suites])
        finally:
            for identifier in identifiers:
                store.remove_key(identifier)
    return folder / "index.html"
