"""`stratus up` (start the control plane) and `stratus db` (migrations)."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from stratus.cli.output import console, err
from stratus.client.credentials import (
    DEFAULT_PROFILE,
    Credentials,
    read_credentials,
    write_credentials,
)
from stratus.core.errors import Conflict, InvalidInput, ServiceUnavailable

if TYPE_CHECKING:
    from stratus.api.tls import ServerTls
    from stratus.core.lease import ControlPlaneLease
    from stratus.core.settings import Settings

# The server (SQLAlchemy, uvicorn, FastAPI, the platform) is imported inside the commands that
# run it, so that `stratus --help` and every command that only talks to the API start fast.

HomeOption = Annotated[
    Path | None, typer.Option("--home", envvar="STRATUS_HOME", help="Stratus home (state dir)")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in the home)",
        show_default=False,
    ),
]


def _settings(home: Path | None, **groups: dict[str, Any]) -> Settings:
    from stratus.core.settings import load_settings

    overrides: dict[str, Any] = {"home": str(home) if home else None}
    for group, values in groups.items():
        clean = {k: v for k, v in values.items() if v is not None}
        if clean:
            overrides[group] = clean
    try:
        return load_settings(overrides)
    except ValueError as exc:
        raise InvalidInput(f"bad setting: {exc}") from exc


# client libraries whose request lines name URLs and headers (a webhook's token, a signed S3
# request): they log at WARNING and above only, whatever the level of `stratus up`
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "botocore", "aiobotocore", "s3fs", "fsspec")


def configure_logging(level: str) -> None:
    """Log lines of `stratus up`: one format, every line redacted (`core.redaction`), and the
    HTTP clients' request logging quiet."""
    from stratus.core.redaction import RedactingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if level.lower() != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    if "://" not in url or url.startswith(("file://", "s3://")):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn the database driver's failures at start-up into one clear line."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    shown = safe_url(url)
    try:
        yield
    except ModuleNotFoundError as exc:
        if "psycopg" in str(exc):
            raise InvalidInput(
                "the PostgreSQL driver is not installed: pip install 'stratus[postgres]'"
            ) from None
        raise InvalidInput(
            f"{shown}: Stratus runs on SQLite and PostgreSQL (postgresql+psycopg://…); "
            f"the driver {exc.name} is not installed"
        ) from None
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InvalidInput(f"{shown} is not a database URL Stratus can use: {exc}") from None
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ServiceUnavailable(f"cannot reach the database {shown}: {reason}") from None


class HomeLock:
    """An exclusive lock on the home, so two control planes never share one database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = self.path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise Conflict(
                f"Stratus is already running on home {self.path.parent} (pid {holder}); "
                "stop it first, or start this one with another --home"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def proxy_options(trusted: list[str]) -> dict[str, Any]:
    """uvicorn's proxy-header handling: X-Forwarded-For and X-Forwarded-Proto are believed only
    from the proxies named (the client is the first address, from the right, that is not one
    of them); with none named, never (uvicorn would trust 127.0.0.1 by default, letting any
    local process claim another source address past an endpoint's network rules)."""
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted)}


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceUnavailable(
            f"cannot listen on {host}:{port} ({exc.strerror}): is something else using it? "
            "Choose another with --port"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Served:
    """The certificate `stratus up` serves over https, and the CA its clients trust."""

    server: ServerTls
    ca: Path | None


def _tls(settings: Settings) -> _Served | None:
    """Make or check the certificate when TLS is on, and say what was done (None: http)."""
    if not settings.tls.enabled:
        return None
    from stratus.api.tls import ServerTls, certificate_for

    certificate = certificate_for(settings)
    for note in certificate.notes:
        err.print(f"TLS: {note}", highlight=False)
    return _Served(ServerTls(certificate.cert, certificate.key), certificate.ca)


def _url(host: str, port: int, *, https: bool) -> str:
    """The platform's URL for this machine's clients. Over https, an address that means every
    interface becomes the loopback one, which the certificate names (it cannot name 0.0.0.0)."""
    if https and host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif https and host == "::":
        host = "::1"
    return f"{'https' if https else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


def up(
    home: HomeOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [8700]")] = None,
    db: DbOption = None,
    store: Annotated[
        str | None,
        typer.Option(help="object store URL, e.g. s3://bucket/prefix (default: the home)"),
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="endpoint of an S3-compatible server")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="where replicas and jobs run: local (this machine) or ray (a Ray cluster) [local]",
            show_default=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="the Ray cluster's address (HOST:PORT of `ray start --head`), with --backend ray",
            show_default=False,
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls",
            help="serve https, with a certificate from a local CA made in the home "
            "(tls/ca.pem: what clients trust)",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="serve https with this PEM certificate (chain) instead (with --tls-key)",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="the PEM private key of --tls-cert", show_default=False),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="seed the default project with a small trained model behind an endpoint 'demo'",
        ),
    ] = False,
) -> None:
    """Start the Stratus control plane (API, gateway, controllers).

    Settings come from these flags, then STRATUS_* variables (STRATUS_HOME, STRATUS_DB_URL,
    STRATUS_STORE_URL, STRATUS_STORE_S3_ENDPOINT_URL, STRATUS_MASTER_KEY, STRATUS_TLS_ENABLED,
    ...), then stratus.toml in the home.

    Example: stratus up --db postgresql+psycopg://stratus@127.0.0.1/stratus --store s3://ml/stratus

    Example: stratus up --demo    (then: stratus predict demo --json '{"instances": [[...]]}')

    Example: stratus up --backend ray --ray-address 10.0.0.2:6379 --store s3://ml/stratus

    Example: stratus up --tls --host 0.0.0.0    (https; SIGHUP reloads the certificate)
    """
    import uvicorn

    from stratus.api.app import create_app
    from stratus.api.platform import Platform
    from stratus.core.lease import ControlPlaneLease
    from stratus.migrations.runner import upgrade
    from stratus.storage.key_check import verify_master_key

    compute: dict[str, Any] = {"backend": backend}
    if ray_address is not None:
        compute["ray"] = {"address": ray_address}
    settings = _settings(
        home,
        server={"host": host, "port": port},
        tls={"enabled": tls, "cert_file": tls_cert, "key_file": tls_key},
        db={"url": db},
        store={"url": store, "s3_endpoint_url": s3_endpoint_url},
        compute=compute,
    )
    configure_logging(log_level)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = HomeLock(settings.lock_path)
    lock.acquire()
    lease: ControlPlaneLease | None = None
    hangup: Any = None
    try:
        served = _tls(settings)
        if served is not None:
            # SIGHUP loads the certificate files again (see docs/tls.md); from now on, so that
            # one sent during the start does not end the process
            reload = served.server.reload
            hangup = signal.signal(signal.SIGHUP, lambda *_: reload())
        sock = _bind(settings.server.host, settings.server.port)
        actual_port = sock.getsockname()[1]
        url = _url(settings.server.host, actual_port, https=served is not None)
        with database_errors(settings.database_url):
            master_key = Platform.master_key(settings)
            platform = Platform.build(settings, master_key)
            upgrade(platform.db)
            # One control plane per database, and only with the data's master key.
            lease = ControlPlaneLease(
                platform.db,
                holder=f"{socket.gethostname()}:{settings.home}",
                host=socket.gethostname(),
                pid=os.getpid(),
                url=url,
                ttl_seconds=settings.server.lease_ttl_seconds,
            )
            lease.acquire()
            # Renewed from now on: a start longer than the lease's life must not lose it. Should
            # another control plane take it all the same, this one stops as on SIGTERM.
            lease.keep(on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM))
            verify_master_key(platform.db, master_key)
        first = platform.start()
        creds = read_credentials(settings.home, DEFAULT_PROFILE)
        ca = str(served.ca) if served is not None and served.ca else None
        if first is not None:
            creds = Credentials(
                url=url, api_key=first.api_key, user="admin", project="default", ca_file=ca
            )
            write_credentials(creds, settings.home)
            console.print(
                "[bold green]First start:[/] created user [bold]admin[/], project "
                "[bold]default[/] and an admin API key (shown once, saved to "
                f"{settings.credentials_path}):\n  API key:        [bold]{first.api_key}[/]\n"
                f"  admin password: [bold]{first.admin_password}[/]",
                highlight=False,
            )
        elif creds is not None and (creds.url != url or (served and creds.ca_file != ca)):
            creds.url = url
            if served is not None:
                creds.ca_file = ca
            write_credentials(creds, settings.home)
        if demo:
            from stratus.api.demo import seed_demo

            console.print(seed_demo(platform), highlight=False)
        console.print(
            f"[bold]Stratus[/] is up at [bold cyan]{url}[/]  (database: "
            f"{safe_url(settings.database_url)}, store: {settings.store_url}, compute: "
            f"{settings.compute.backend}"
            f"{f'; CA: {served.ca}' if served is not None and served.ca else ''}); "
            "Ctrl-C stops it",
            highlight=False,
        )
        app = create_app(platform)
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's lines go through the root handler (redacted) too
            log_level=log_level.lower(),
            access_log=log_level.lower() == "debug",
            timeout_graceful_shutdown=10,
            server_header=False,
            **proxy_options(settings.security.trusted_proxies),
        )
        if served is not None:
            # uvicorn would build an SSL context of its own in `load`; it serves this one
            # instead, which SIGHUP reloads in place
            config.load()
            config.ssl = served.server.context
        server = uvicorn.Server(config)
        # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, which would kill the
        # process (or raise KeyboardInterrupt) before the clean-up below; these handlers (which
        # uvicorn restores before re-raising) ask the server to exit instead, so Ctrl-C and
        # SIGTERM both stop Stratus cleanly, with exit 0.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        try:
            server.run(sockets=[sock])
        finally:
            platform.stop()
            sock.close()
    finally:
        if hangup is not None:
            signal.signal(signal.SIGHUP, hangup)
        if lease is not None:
            lease.release()
        lock.release()
    err.print("Stratus stopped.")


db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = None, db: DbOption = None) -> None:
    """Apply every pending migration (`stratus up` does this too).

    Example: stratus db upgrade --db postgresql+psycopg://stratus@127.0.0.1/stratus
    """
    from stratus.core.database import Database
    from stratus.migrations.runner import current_revision, upgrade

    settings = _settings(home, db={"url": db})
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with database_errors(settings.database_url):
        database = Database(settings.database_url)
        try:
            before = current_revision(database)
            upgrade(database)
            after = current_revision(database)
        finally:
            database.dispose()
    if before == after:
        console.print(f"database {safe_url(settings.database_url)} is up to date ({after})")
    else:
        console.print(f"migrated {safe_url(settings.database_url)}: {before or 'empty'} → {after}")


@db_app.command("current")
def db_current(home: HomeOption = None, db: DbOption = None) -> None:
    """Print the database's migration revision and the newest one this version knows.

    Example: stratus db current
    """
    from stratus.core.database import Database
    from stratus.migrations.runner import current_revision, head_revision

    settings = _settings(home, db={"url": db})
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)  # SQLite needs the folder
    with database_errors(settings.database_url):
        database = Database(settings.database_url)
        try:
            current = current_revision(database)
        finally:
            database.dispose()
    console.print(f"current: {current or 'none'}  head: {head_revision()}")
