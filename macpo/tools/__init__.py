"""Command-line tools around the library: each is ``python -m macpo.tools.<name>``.

``sweeps`` (list the named grids, the status of a grid's runs), ``bench`` (speed and memory),
``calibrate`` (SMAC-lite against the real game), ``smac_lite_trace`` (a policy's battles step by
step). Training itself is ``python -m macpo.train``. The library never imports this package.
"""
