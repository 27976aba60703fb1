"""Where the configs are: the one module that knows.

``conf/`` (Hydra's config groups) and ``sweeps/`` (the named grids, the ``sweep`` group through
the symlink ``conf/sweep``) sit at the top of a checkout. The package reaches them through the
symlink ``macpo/conf`` → ``../conf``; a built wheel holds real copies at the same place (package
data in ``pyproject.toml``), so ``python -m macpo.train`` finds them from any folder either way.
"""

from __future__ import annotations

from pathlib import Path

#: Hydra's primary config folder (``train.yaml`` and the config groups)
CONF_DIR = (Path(__file__).resolve().parents[1] / "conf").resolve()
#: the named grids, ``sweeps/<name>.yaml`` (config group ``sweep``)
SWEEPS_DIR = (CONF_DIR / "sweep").resolve()

__all__ = ["CONF_DIR", "SWEEPS_DIR"]
