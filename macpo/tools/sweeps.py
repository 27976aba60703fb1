"""The paper's grids as named sweeps, and where each of their runs stands (``macpo.runs.grids``).

CLI::

    python -m macpo.tools.sweeps list
    python -m macpo.tools.sweeps status <name> [overrides...]   # e.g. budget=smoke logger.tracking_uri=...

(``status sweep=<name> <overrides>`` accepts the words of the launch command as they are.)

``status`` only reads: on a store that does not exist (or is not an MLflow store) it says so and
exits with code 2, creating nothing. It prints, for each budget the store holds runs of, how many
cells of the grid are done (FINISHED), running (a process holds the run's lock), interrupted
(stopped by a signal, or dead without a word: resumable), failed (an error) or missing, and lists
every cell not done.
Overrides select the store (``logger.*``, ``checkpoint.dir``), a budget (``budget=smoke``) and
restrict the grid exactly as they would on the ``macpo.train -m`` command line (``seed=0``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from macpo.runs.grids import STATES, BudgetStatus, grid_cells, sweep_names, sweep_params, sweep_status


def format_status(name: str, report: list[BudgetStatus], uri: str) -> str:
    lines = [f"sweep {name}  (store {uri})"]
    for b in report:
        counts = b.counts()
        lines.append(f"budget={b.budget}: {len(b.cells)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
        for c in b.cells:
            if c.state == "done":
                continue
            where = ""
            if c.run_id:
                where = f"  run {c.run_id}"
                if c.env_steps is not None:
                    where += f"  at env step {c.env_steps}" + (f"/{c.t_max}" if c.t_max else "")
            lines.append(f"  {c.state:<11} {c.cell}{where}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m macpo.tools.sweeps", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the named grids and their sizes")
    st = sub.add_parser("status", help="done / running / interrupted / failed / missing runs of a grid")
    st.add_argument("name")
    st.add_argument("overrides", nargs="*", help="Hydra overrides: budget=smoke, logger.tracking_uri=..., seed=0")
    args = parser.parse_args(argv)

    if args.command == "list":
        for n in sweep_names():
            params = sweep_params(n)
            print(f"{n:<24} {len(grid_cells(n)):>3} runs   " + "  ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    name = args.name.removeprefix("sweep=")  # the launch command's words work too
    try:
        report, uri = sweep_status(name, args.overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_status(name, report, uri))
    return 0


if __name__ == "__main__":
    sys.exit(main())
