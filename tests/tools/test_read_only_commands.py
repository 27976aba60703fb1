"""Read-only commands stay read-only: on a missing or non-MLflow store they say so, exit non-zero, create nothing."""

from __future__ import annotations

import pytest

from analysis import figures
from macpo.tools import sweeps


@pytest.fixture(params=["missing", "empty-file", "not-mlflow", "folder"])
def not_a_store(request, tmp_path):
    path = tmp_path / "store" / "m.db"
    if request.param != "missing":
        path.parent.mkdir()
    if request.param == "empty-file":
        path.write_bytes(b"")
    elif request.param == "not-mlflow":
        import sqlite3

        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (x)")
    elif request.param == "folder":
        path.mkdir()
    before = sorted((p.relative_to(tmp_path), p.stat().st_size if p.is_file() else -1) for p in tmp_path.rglob("*"))
    yield f"sqlite:///{path}", request.param
    after = sorted((p.relative_to(tmp_path), p.stat().st_size if p.is_file() else -1) for p in tmp_path.rglob("*"))
    assert after == before, "a read-only command wrote to the file system"


REASON = {"missing": "no MLflow store", "empty-file": "is not an MLflow store",
          "not-mlflow": "is not an MLflow store", "folder": "is not a regular file"}  # fmt: skip


def _one_line_naming(err: str, uri: str, kind: str) -> None:
    assert err.count("\n") == 1 and uri in err and REASON[kind] in err, err


def test_sweeps_status_on_a_bad_store_says_so(not_a_store, capsys):
    uri, kind = not_a_store
    assert sweeps.main(["status", "fig4_ablation", f"logger.tracking_uri={uri}"]) == 2
    out, err = capsys.readouterr()
    _one_line_naming(err, uri, kind)
    assert "missing" not in out  # no "12 missing" report


def test_figures_on_a_bad_store_says_so(not_a_store, tmp_path, capsys):
    uri, kind = not_a_store
    assert figures.main(["--tracking-uri", uri, "--out", str(tmp_path / "store" / "figs"), "--no-progress"]) == 2
    _one_line_naming(capsys.readouterr().err, uri, kind)
