"""Coming in with data, going out with it, and forgetting it (issue 14): CSV import and
export, merges of cards whose contacts were merged, anonymisation, the audit trail.

Money moves only through the ledger's public functions (api.ledger); this package
imports no Flask except in its views and CLI modules.
"""
