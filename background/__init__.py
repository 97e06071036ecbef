"""Background work: the claim-and-work loops, their pacing and the worker model.

Activities, the scheduler and the pages call into it; the ledger never imports it.
"""
