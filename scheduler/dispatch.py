"""Moved to background.dispatch (one home for background work). This name stays, as the very
same module, for code written before the move; import background.dispatch instead."""
import sys

from background import dispatch as _moved

sys.modules[__name__] = _moved
