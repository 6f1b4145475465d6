"""The cluster's PostgreSQL (tests/support/cluster.py) runs as the unprivileged user pgserver
uses, from wherever the clone is: a clone under `mktemp -d` or root's home is a folder only root
may enter, and the wheel's binaries are inside it (in the virtualenv)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.cluster import PGSERVER_INSTALL, init_postgres

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="initdb runs as pgserver's unprivileged user: needs root and util-linux's setpriv",
)


def _linked_copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)


def test_initdb_runs_from_a_virtualenv_only_root_may_enter(tmp_path):
    clone = tmp_path / "clone"  # as made by `mktemp -d`
    clone.mkdir(mode=0o700)
    site = clone / "site-packages"
    # The wheel's layout: the install, and the libraries its binaries' RPATH names beside it.
    _linked_copy(PGSERVER_INSTALL, site / "pgserver" / "pginstall")
    _linked_copy(PGSERVER_INSTALL.parents[1] / "pgserver.libs", site / "pgserver.libs")

    work = tmp_path / "work"
    work.mkdir()
    bin_dir, pgdata, user = init_postgres(work, site / "pgserver" / "pginstall")

    assert (pgdata / "PG_VERSION").exists()
    assert pgdata.owner() == user
    assert not bin_dir.is_relative_to(clone)
    assert (clone.stat().st_mode & 0o777) == 0o700  # the clone itself is left as it was
