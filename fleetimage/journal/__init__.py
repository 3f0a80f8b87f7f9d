"""The ledger: the run journal in SQLite (schema, one writer thread, the store's API).

Imports only :mod:`fleetimage.core`. The engine calls it where durability must come first.
"""

from fleetimage.journal.store import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    Journal,
    RunSummary,
    default_journal_path,
)

__all__ = ["RUN_STATUSES", "SCHEMA_VERSION", "Journal", "RunSummary", "default_journal_path"]
