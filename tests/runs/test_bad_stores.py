"""Stores that are not stores: validation opens the store it will use, read-only, before anything exists.

``macpo.runs.tracking.inspect_store`` is the one check, for runs (``check_tracking_uri``) and for the
read-only commands (``require_existing_store``): a file that is not an MLflow store, a missing
database driver, a database that does not answer, an in-memory database (the run would be lost)
each end with one line and exit code 2, and the file in the way is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
import sqlalchemy as sa

from analysis.export import main as export_main
from analysis.figures import main as figures_main
from macpo.runs.tracking import StoreError, check_tracking_uri, require_existing_store
from macpo.tools.sweeps import main as sweeps_main
from tests.helpers import TINY, refused_in_one_line


def _random_bytes(path):
    path.write_bytes(os.urandom(5000))


def _other_database(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text)")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "make, message",
    [(_random_bytes, "is not an MLflow store (SQLite cannot read it"), (_other_database, "no MLflow tables")],
    ids=["random-bytes", "another-database"],
)
def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path, make, message):
    store = tmp_path / "m.db"
    make(store)
    digest = _digest(store)
    line = refused_in_one_line(tmp_path, [*TINY, f"logger.tracking_uri=sqlite:///{store}"])
    assert line.startswith("error: logger.tracking_uri=") and str(store) in line and message in line, line
    assert _digest(store) == digest  # MLflow wrote no schema into it


@pytest.mark.parametrize(
    "uri, message",
    [
        ("postgresql://127.0.0.1:9/db", "127.0.0.1:9"),  # no driver here; with one, nothing answers on port 9
        ("mysql://127.0.0.1:9/db", "127.0.0.1:9"),
        ("sqlite://", "in-memory database"),
        ("sqlite:///:memory:", "in-memory database"),
        ("sqlite:///file::memory:", "in-memory database"),
        ("sqlite:////dev/null", "/dev/null is not a regular file"),
    ],
)
def test_a_store_that_cannot_keep_the_run_is_refused_before_anything_exists(tmp_path, uri, message):
    line = refused_in_one_line(tmp_path, [*TINY, f"logger.tracking_uri={uri}"])
    assert line.startswith(f"error: logger.tracking_uri={uri!r}") and message in line, line


def test_a_missing_driver_names_the_package_to_install():
    with pytest.raises(StoreError, match=r"driver \w+ is not installed \(pip install "):
        check_tracking_uri("postgresql+psycopg2://127.0.0.1:9/db")


@pytest.mark.parametrize("uri", ["postgresql://127.0.0.1:9/db", "mysql://127.0.0.1:9/db"])
def test_an_unreachable_database_is_refused_in_seconds(monkeypatch, uri):
    """With its driver installed (faked here), a database nobody serves is refused by one connection attempt."""
    class InstalledDriver:
        @staticmethod
        def import_dbapi():
            return None

    monkeypatch.setattr(sa.engine.URL, "get_dialect", lambda self, *args, **kwargs: InstalledDriver)
    with pytest.raises(StoreError, match=r"no database answers at 127\.0\.0\.1:9"):
        check_tracking_uri(uri)
    with pytest.raises(StoreError, match=r"no database answers at 127\.0\.0\.1:9"):
        require_existing_store(uri)


def _figures(uri, out):
    return figures_main(["--tracking-uri", uri, "--out", str(out), "--no-progress"])


def _export(uri, out):
    return export_main(["--tracking-uri", uri, "--out", str(out / "r.json"), "--no-progress"])


def _status(uri, out):
    return sweeps_main(["status", "demo", f"logger.tracking_uri={uri}"])


@pytest.mark.parametrize("command", [_figures, _export, _status], ids=["figures", "export", "status"])
@pytest.mark.parametrize("store", ["random-bytes", "absent", "no-driver", "in-memory"])
def test_read_only_commands_exit_2_in_one_line_on_a_bad_store(tmp_path, capsys, command, store):
    db = tmp_path / "m.db"
    if store == "random-bytes":
        _random_bytes(db)
    uri = {"no-driver": "postgresql://127.0.0.1:9/db", "in-memory": "sqlite://"}.get(store, f"sqlite:///{db}")
    before = sorted(tmp_path.rglob("*"))
    assert command(uri, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and uri.split("///")[-1] in err[0], err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created, not even the output folder or a cache
