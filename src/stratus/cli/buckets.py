"""`stratus buckets`: buckets and the versioned objects in them, with progress bars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import (
    Format,
    OutputOption,
    QuietOption,
    console,
    err,
    human_size,
    show,
    transfer_progress,
)

app = typer.Typer(help="Buckets and their objects.", no_args_is_help=True)

BUCKET_COLUMNS = [
    ("NAME", lambda b: b.metadata.name),
    ("OBJECTS", lambda b: b.status.objects),
    ("SIZE", lambda b: human_size(b.status.size_bytes)),
    ("LABELS", lambda b: b.metadata.labels),
    ("CREATED", lambda b: b.metadata.created_at),
]
VERSION_COLUMNS = [
    ("KEY", lambda v: v.key),
    ("VERSION", lambda v: v.version_id),
    ("SIZE", lambda v: "-" if v.is_delete_marker else human_size(v.size)),
    ("LATEST", lambda v: v.is_latest),
    ("DELETED", lambda v: v.is_delete_marker),
    ("CREATED", lambda v: v.created_at),
    ("BY", lambda v: v.created_by),
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    output: OutputOption = Format.table,
) -> None:
    """Create a bucket.

    Example: stratus buckets create raw-data -p fraud
    """
    bucket = client(ctx).buckets.create(
        name, project=project_of(ctx, project), description=description
    )
    show(bucket, output, BUCKET_COLUMNS)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's buckets.

    Example: stratus buckets list -p fraud
    """
    found = client(ctx).buckets.list(
        in_scope(ctx, project, all_projects), selector, all_projects=all_projects
    )
    show(found, output, with_project(BUCKET_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context, name: str, project: ProjectOption = None, output: OutputOption = Format.yaml
) -> None:
    """Show a bucket.

    Example: stratus buckets show raw-data
    """
    show(client(ctx).buckets.get(name, project_of(ctx, project)), output)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    force: Annotated[bool, typer.Option("--force", help="also delete every object")] = False,
) -> None:
    """Delete a bucket (refused while it holds objects, unless --force).

    Example: stratus buckets delete scratch --force
    """
    client(ctx).buckets.delete(name, project_of(ctx, project), force=force)
    console.print(f"deleted bucket {name}")


@app.command("put")
def put(
    ctx: typer.Context,
    bucket: str,
    source: Annotated[Path, typer.Argument(help="a file, or - for standard input")],
    key: Annotated[str | None, typer.Argument(help="object key (default: the file name)")] = None,
    project: ProjectOption = None,
    content_type: Annotated[str | None, typer.Option(help="MIME type")] = None,
    quiet: QuietOption = False,
    output: OutputOption = Format.table,
) -> None:
    """Upload a file as a new version of an object (streamed, with a progress bar).

    Example: stratus buckets put raw-data ./train.csv datasets/train.csv
    """
    stdin = str(source) == "-"
    if not stdin and not source.is_file():
        raise typer.BadParameter(f"{source} is not a file", param_hint="SOURCE")
    if key is None:
        if stdin:
            raise typer.BadParameter("name the KEY when reading standard input")
        key = source.name
    total = None if stdin else source.stat().st_size
    with transfer_progress(f"↑ {key}", total, quiet) as advance:
        data = sys.stdin.buffer if stdin else source
        version = client(ctx).buckets.upload(
            bucket,
            key,
            data,
            project=project_of(ctx, project),
            content_type=content_type,
            progress=advance,
        )
    show(version, output, VERSION_COLUMNS)


@app.command("get")
def get(
    ctx: typer.Context,
    bucket: str,
    key: str,
    dest: Annotated[
        Path | None,
        typer.Argument(help="file or folder (default: the key's name here); - = stdout"),
    ] = None,
    version: Annotated[str | None, typer.Option("--version", "-v", help="a version id")] = None,
    project: ProjectOption = None,
    quiet: QuietOption = False,
) -> None:
    """Download an object (the latest version, or --version), verified as it arrives.

    Example: stratus buckets get raw-data datasets/train.csv ./train.csv --version v01...
    """
    c = client(ctx)
    project = project_of(ctx, project)
    if dest is not None and str(dest) == "-":
        for chunk in c.buckets.stream(bucket, key, version_id=version, project=project):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    head = c.buckets.head_object(bucket, key, version_id=version, project=project)
    total = int(head.get("content-length", 0)) or None
    target = dest or Path(Path(key).name)
    with transfer_progress(f"↓ {key}", total, quiet) as advance:
        path = c.buckets.download(
            bucket, key, target, version_id=version, project=project, progress=advance
        )
    err.print(
        f"wrote {path} ({human_size(total or 0)}, version {head.get('x-stratus-version-id')})",
        markup=False,
    )


@app.command("ls")
def ls(
    ctx: typer.Context,
    bucket: str,
    prefix: Annotated[str, typer.Argument(help="only keys starting with this")] = "",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="do not roll keys up at '/'")
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List objects (latest versions); folders ('/') roll up unless --recursive.

    Example: stratus buckets ls raw-data datasets/ -r
    """
    listing = client(ctx).buckets.list_objects(
        bucket, prefix, delimiter=None if recursive else "/", project=project_of(ctx, project)
    )
    if output != Format.table:
        show(listing, output)
        return
    rows: list[dict[str, Any]] = [
        {"key": p, "size": "-", "version": "-", "updated": None} for p in listing.prefixes
    ]
    rows += [
        {"key": o.key, "size": human_size(o.size), "version": o.version_id, "updated": o.updated_at}
        for o in listing.objects
    ]
    show(
        sorted(rows, key=lambda r: str(r["key"])),
        output,
        [
            ("KEY", lambda r: r["key"]),
            ("SIZE", lambda r: r["size"]),
            ("VERSION", lambda r: r["version"]),
            ("UPDATED", lambda r: r["updated"]),
        ],
    )


@app.command("versions")
def versions(
    ctx: typer.Context,
    bucket: str,
    prefix: Annotated[str, typer.Argument(help="only keys starting with this")] = "",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List every version of the objects under a prefix, newest first.

    Example: stratus buckets versions raw-data datasets/train.csv
    """
    found = client(ctx).buckets.list_versions(bucket, prefix, project=project_of(ctx, project))
    show(found, output, VERSION_COLUMNS)


@app.command("rm")
def rm(
    ctx: typer.Context,
    bucket: str,
    key: str,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="erase this version for good")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Delete an object (older versions stay readable), or erase one version with --version.

    Example: stratus buckets rm raw-data datasets/old.csv
    """
    result = client(ctx).buckets.delete_object(
        bucket, key, version_id=version, project=project_of(ctx, project)
    )
    if version:
        console.print(f"erased version {result.version_id} of {key}", markup=False)
    else:
        console.print(
            f"deleted {key} (older versions stay; see `stratus buckets versions`)", markup=False
        )
