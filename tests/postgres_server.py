"""A real PostgreSQL server for the tests, from Debian's packages, in a temporary directory on a
free loopback port. initdb refuses to run as root, so as root the server runs as the
``postgres`` system user that the Debian package creates."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

USER = "framefleet"


def _bindir() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: run scripts/install_system_deps.sh")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    root: Path
    port: int
    run_as: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    async def create_database(self, migrated: bool = True) -> str:
        """A fresh database, migrated as `framefleet migrate` would (or empty); its URL."""
        from framefleet.coordinator.store.open import connect

        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()
        if migrated:
            store = await connect(self.url(name))
            try:
                await store.migrate()
            finally:
                await store.close()
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = str(_bindir() / "pg_ctl")
        subprocess.run(
            [*self.run_as, pg_ctl, "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="framefleet-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(root / "data"),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return PostgresServer(root, port, run_as)
