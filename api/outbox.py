"""Moved to background.outbox (one home for background work). This name stays, as the very
same module, for code written before the move; import background.outbox instead."""
import sys

from background import outbox as _moved

sys.modules[__name__] = _moved
