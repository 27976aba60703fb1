"""Read MAC-PO training runs back from MLflow and draw the paper's figures and tables.

``load`` (MLflow -> tidy DataFrame, cached), ``selection`` (which runs make which figure),
``curves`` (seeds on a common step grid, mean and CI), ``figures`` (Figures 1-4 and the CLI
``python -m analysis.figures``), ``tables`` (final performance, IQM, probability of
improvement, headline sentences), ``style`` (one colour per method), ``results`` (a grid's
finished runs with their provenance in ``results/``, merged across stores, read back), ``claims``
(the paper's claims measured, with verdicts) and ``report`` (the results page from ``results/``
alone, ``make results``). Reads logs only: nothing here imports ``macpo``.
"""
