"""The bonus ledger: the only writer of entries. Imports no Flask and nothing of
activities/ or scheduler/; they call it."""
