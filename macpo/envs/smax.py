"""JaxMARL's SMAX as a SMAC backend (``env.backend: smax``); filled in below."""

from __future__ import annotations


def check_smax(map_name: str) -> None:
    raise ValueError("env.backend=smax is not implemented yet")
