"""Deprecated location of the pattern-set baselines; use :mod:`osnmf.factorize.baselines`.

``import osnmf.baselines`` returns that module itself (same functions, same objects).
"""

import sys
import warnings

from osnmf.factorize import baselines as _baselines

warnings.warn("osnmf.baselines moved to osnmf.factorize.baselines", DeprecationWarning,
              stacklevel=2)
sys.modules[__name__] = _baselines
