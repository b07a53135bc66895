"""`collide.sweep` lives in `collide.studies.sweep` (the studies: runs of variants of one scenario).
This name stays so that documented imports keep working; it is the same module object."""
import sys as _sys

from .studies import sweep as _module

_sys.modules[__name__] = _module
