"""Database migrations (Alembic) for every service's tables, run by `stratus up` and
`stratus db upgrade`. New revisions: `make migration MESSAGE="..."`."""
