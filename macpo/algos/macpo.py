"""MAC-PO (Mei et al., AAMAS 2023): the Weighted-QMIX backbone with no α-weighting; the QMIX
loss is weighted per timestep only by the replay sampler (``sampler=macpo`` by default), whose
weights need δ, Q* and the agents' Boltzmann probabilities — all of which this module provides."""

from __future__ import annotations

from macpo.algos.wqmix import WQMIX


class MACPO(WQMIX):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("name", "macpo")
        if kwargs.pop("weighting", "none") != "none":
            raise ValueError("algo=macpo takes its weights from the sampler; use algo=ow_qmix/cw_qmix for WQMIX")
        super().__init__(*args, weighting="none", **kwargs)
