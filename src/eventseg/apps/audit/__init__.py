"""Fairness audit of a finished run: do its broad segments and propensity tiers over- or
under-represent groups of a protected attribute the run never saw?

attributes.py reads and aligns the attribute table, stats.py holds the tests and the
multiple-comparison control, disclosure.py the small-cell suppression, wording.py the plain
sentences, api.py (`audit_run`) puts them together and writes `<run_dir>/audit.json`.
"""

from eventseg.apps.audit.api import AuditSettings, audit_run

__all__ = ["AuditSettings", "audit_run"]
