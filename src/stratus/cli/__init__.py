"""The `stratus` command (Typer + Rich): one module per command group, all built on the SDK."""
