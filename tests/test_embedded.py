"""The embedded servers' data folder, without starting the servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.embedded import EmbeddedError, EmbeddedServers


def test_servers_create_nested_data_folder(tmp_path: Path) -> None:
    folder = tmp_path / "missing" / "parents" / "data"

    servers = EmbeddedServers(folder)

    assert folder.is_dir()
    assert servers.redis.folder == folder / "redis"
    assert servers.postgres.folder == folder / "postgres"


def test_servers_reject_folder_under_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(EmbeddedError, match="cannot create the data folder"):
        EmbeddedServers(blocker / "data")
