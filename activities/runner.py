"""Moved to background.runner (one home for background work). This name stays, as the very
same module, for code written before the move; import background.runner instead."""
import sys

from background import runner as _moved

sys.modules[__name__] = _moved
