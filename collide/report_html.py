"""`collide.report_html` lives in `collide.studies.report_html` (the studies: runs of variants of one scenario).
This name stays so that documented imports keep working; it is the same module object."""
import sys as _sys

from .studies import report_html as _module

_sys.modules[__name__] = _module
