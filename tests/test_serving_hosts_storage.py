"""The Host allow-list (DNS rebinding guard), the serve command's limit flags, and the state file giving
deleted conversations' space back to the disk."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from http_helpers import client_of, serve

from cli.serve import _allowed_hosts, add_serving_commands
from sam3_core.errors import UsageError
from serving.chat.retention import Retention
from serving.chat.store import ChatStore
from serving.config import ServeSettings
from serving.http.hosts import default_allowed_hosts, host_allowed, host_name


def _parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_serving_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize(("header", "name"), [("LocalHost:8000", "localhost"), ("[::1]:8000", "::1"),
                                              ("127.0.0.1", "127.0.0.1"), ("example.org.", "example.org")])
def test_host_name_drops_port_brackets_and_case(header, name):
    assert host_name(header) == name


def test_host_patterns():
    assert host_allowed("api.example.org", ("*.example.org",))
    assert not host_allowed("example.org.evil.net", ("*.example.org",))
    assert not host_allowed("evilexample.org", ("*.example.org",))
    assert host_allowed("anything", ("*",))
    assert not host_allowed("localhost.evil.net", ("localhost",))


def test_loopback_servers_get_the_allow_list_by_default_and_public_ones_do_not():
    assert set(_allowed_hosts(_parse())) == {"localhost", "127.0.0.1", "::1"}
    assert _allowed_hosts(_parse("--host", "0.0.0.0")) == ()
    assert _allowed_hosts(_parse("--host", "0.0.0.0", "--allowed-host", "sam3.lab.org")) == ("sam3.lab.org",)
    assert default_allowed_hosts("127.0.0.2")[-1] == "127.0.0.2"


def test_a_rebound_host_name_is_refused_before_any_route(engine):
    with client_of(serve(engine, allowed_hosts=default_allowed_hosts("127.0.0.1"))) as client:
        assert client.get("/healthz").status_code == 200  # Host: 127.0.0.1:<port>
        assert client.get("/healthz", headers={"Host": "localhost:1234"}).status_code == 200
        refused = client.post("/v1/segment", headers={"Host": "attacker.example:8000"}, json={})
        assert refused.status_code == 421
        assert refused.json()["error"]["code"] == "wrong_host"
        assert "attacker.example" in refused.json()["error"]["message"]
        assert client.get("/chat", headers={"Host": "attacker.example"}).status_code == 421


def test_serve_flags_reach_the_settings_and_bad_values_are_named():
    args = _parse("--retention-days", "2", "--retention-max-mb", "10", "--max-connections", "7",
                  "--header-timeout", "3", "--body-timeout", "4", "--url-allow-network", "10.0.0.0/8")
    assert (args.retention_days, args.retention_max_mb, args.max_connections) == (2.0, 10.0, 7)
    assert args.url_allow_network == ["10.0.0.0/8"]
    with pytest.raises(SystemExit):
        _parse("--retention-days", "0")
    with pytest.raises(UsageError, match="not-a-net"):
        ServeSettings(url_allow_networks=("not-a-net",))
    with pytest.raises(UsageError, match="allowed_hosts"):
        ServeSettings(allowed_hosts=("http://x/",))


def _fill(store: ChatStore, count: int) -> list[str]:
    rng = np.random.default_rng(5)
    # Noise does not compress: each PNG is about 1 MiB.
    return [store.create(rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)).id for _ in range(count)]


def _file_bytes(path: str) -> int:
    return os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0)


def test_retention_gives_the_deleted_conversations_space_back_to_the_disk(tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = ChatStore(path)
    try:
        _fill(store, 4)
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = _file_bytes(path)
        assert full > 4 * 1_000_000
        retention = Retention(store, None, max_age_s=3600, max_bytes=1_200_000, every_s=60)
        doomed = asyncio.run(retention.sweep())
        assert len(doomed) == 3
        assert _file_bytes(path) < full / 2, "the deleted images' pages were kept in the file"
    finally:
        store.close()


def test_a_state_file_from_an_older_server_is_switched_once(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.sqlite")
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()  # auto_vacuum off, as SQLite makes it
    store = ChatStore(path)
    try:
        assert store._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        ids = _fill(store, 2)
        store.delete(ids[0])
        assert store.reclaim() > 1_000_000
    finally:
        store.close()
