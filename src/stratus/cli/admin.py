"""`stratus admin`: platform administration (platform admins only): the master key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from stratus.cli.context import client
from stratus.cli.output import Format, OutputOption, console, count_progress, err, show
from stratus.core.errors import StratusError

if TYPE_CHECKING:
    from stratus.client._admin import Admin
    from stratus.storage.schemas import MasterKeyRotationRead

app = typer.Typer(help="Platform administration (platform admins only).", no_args_is_help=True)

ROTATION_COLUMNS = [
    ("ID", lambda r: r.id),
    ("STATE", lambda r: r.state),
    ("DATA KEYS", lambda r: f"{r.keys_done}/{r.keys_total}"),
    ("STARTED BY", lambda r: r.started_by),
    ("STARTED", lambda r: r.started_at),
    ("FINISHED", lambda r: r.finished_at),
    ("ERROR", lambda r: r.error),
]


def _admin(ctx: typer.Context) -> Admin:
    return client(ctx).admin


@app.command("rotate-master-key")
def rotate_master_key(
    ctx: typer.Context,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="follow the rotation until it finishes"),
    ] = True,
    timeout: Annotated[
        float | None, typer.Option(help="give up waiting after this many seconds")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Rotate the master key while the platform serves.

    Every data key is re-wrapped under a new key, then master.key in the platform's home is
    replaced: the old key is gone, so keep a copy with any database backup made before. A
    rotation that did not finish is carried on instead. A key given by STRATUS_MASTER_KEY is
    not rotated (docs/key-rotation.md says how).

    Example: stratus admin rotate-master-key
    """
    admin = _admin(ctx)
    rotation = admin.rotate_master_key()
    if wait and rotation.state == "running":
        with count_progress("re-wrapping data keys", rotation.keys_total, quiet=False) as advance:
            shown = [rotation.keys_done]
            advance(rotation.keys_done)

            def progress(now: MasterKeyRotationRead) -> None:
                advance(max(0, now.keys_done - shown[0]))
                shown[0] = now.keys_done

            rotation = admin.wait_for_master_key_rotation(
                rotation.id, timeout=timeout, on_progress=progress
            )
    show(rotation, output, ROTATION_COLUMNS)
    if rotation.state == "interrupted":
        raise StratusError(
            f"master key rotation {rotation.id} stopped: {rotation.error or 'no reason given'}; "
            "`stratus admin rotate-master-key` carries it on"
        )
    if rotation.state == "running":
        err.print(f"follow it with: stratus admin master-key-rotations {rotation.id}")
    elif output == Format.table:
        console.print(f"the master key was rotated ({rotation.keys_done} data keys re-wrapped)")


@app.command("master-key-rotations")
def master_key_rotations(
    ctx: typer.Context,
    rotation_id: Annotated[str | None, typer.Argument(help="one rotation (default: all)")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List master key rotations, newest first, or show one.

    Example: stratus admin master-key-rotations
    """
    admin = _admin(ctx)
    if rotation_id is not None:
        show(admin.master_key_rotation(rotation_id), output, ROTATION_COLUMNS)
    else:
        show(admin.master_key_rotations(), output, ROTATION_COLUMNS)
