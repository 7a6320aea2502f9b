"""Notification channels: where alerts go (a webhook, a Slack-compatible webhook, an SMTP
server). Their secrets — header values, the SMTP password, the URL (a Slack URL's path is its
credential) — are sealed at rest (`channel_secrets.py`), never shown again (`****`), and
opened only to send (`config`). A channel a rule names cannot be deleted."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.ids import new_id
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, metadata_of
from stratus.monitoring import alert_schemas as s
from stratus.monitoring.alert_schemas import MASK, SECRET_REFERENCE
from stratus.monitoring.alert_tables import AlertRuleRow, ChannelRow
from stratus.monitoring.channel_secrets import SecretBox
from stratus.monitoring.destinations import DestinationRefused, NetworkPolicy, Unresolvable
from stratus.monitoring.notifications import ChannelConfig

ProjectLookup = Callable[[Session, str], str]
SecretValues = Callable[[str, Mapping[str, str]], dict[str, str]]  # (project, {key: name})


class ChannelService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        project_uid: ProjectLookup,
        networks: NetworkPolicy | None = None,
        secret_values: SecretValues | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.secret_values = secret_values
        self.networks = networks or NetworkPolicy()
        self._project_uid = project_uid
        self._channels = ProjectScoped(ChannelRow, "notification channel")

    def apply(self, project: str, data: s.ChannelApply) -> tuple[s.ChannelRead, bool]:
        """Create or replace a channel. Secrets are sealed; `****` keeps a stored one while
        the channel still goes to the same place. Its host must not be an internal address."""
        self._check_destination(data)
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            row = session.scalar(
                select(ChannelRow).where(
                    ChannelRow.project_uid == project_uid, ChannelRow.name == data.name
                )
            )
            created = row is None
            stored: dict[str, Any] = {}
            if row is None:
                row = ChannelRow(uid=new_id(), name=data.name, project_uid=project_uid)
                session.add(row)
            elif row.secrets:
                stored = self.box.open(row.secrets, row.uid)
            secrets = _merge_secrets(data, stored, row.config or {})
            row.labels = dict(data.labels)
            row.type = data.type
            row.config = {
                "description": data.description,
                "url": _display_url(data.type, secrets.get("url")),
                "headers": sorted(secrets.get("headers", {})),
                "to": list(data.to),
                "sender": data.sender,
                "smtp_host": data.smtp_host,
                "smtp_port": data.smtp_port,
                "starttls": data.starttls,
                "username": data.username,
                "password": bool(secrets.get("password")),
            }
            row.secrets = self.box.seal(secrets, row.uid) if secrets else None
            session.flush()
            return self._channel_read(session, row, project), created

    def list(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[builtins.list[s.ChannelRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._channels, session, project, self._project_uid, selector, limit, page_token
            )
            users = _rules_by_channel(session, {r.project_uid for r, _ in pairs})
            return [
                self._channel_read(session, r, p, users.get((r.project_uid, r.name), []))
                for r, p in pairs
            ], token

    def get(self, project: str, name: str) -> s.ChannelRead:
        with self.db.transaction() as session:
            return self._channel_read(session, self._channel(session, project, name), project)

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            row = self._channel(session, project, name)
            users = rules_using(session, row.project_uid, name)
            if users:
                raise Conflict(
                    f"notification channel {name!r} is used by alert rules ({', '.join(users)}): "
                    "take it out of them first"
                )
            session.delete(row)

    def config(self, project: str, name: str) -> ChannelConfig | None:
        """The channel with its secrets open, to send through (None when it is gone)."""
        with self.db.transaction() as session:
            try:
                row = self._channel(session, project, name)
            except NotFound:
                return None
            secrets = self.box.open(row.secrets, row.uid) if row.secrets else {}
            config = dict(row.config or {})
            kind = row.type
        secrets = self._referenced(project, secrets)  # outside: the secrets' own transaction
        return ChannelConfig(
            name=name,
            type=kind,
            url=_str(secrets.get("url")),
            headers=dict(secrets.get("headers") or {}),
            to=tuple(config.get("to") or ()),
            sender=config.get("sender"),
            smtp_host=config.get("smtp_host"),
            smtp_port=int(config.get("smtp_port") or 587),
            starttls=bool(config.get("starttls", True)),
            username=config.get("username"),
            password=_str(secrets.get("password")),
            networks=self.networks,
        )

    def references(
        self, project: str, names: Collection[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """Per channel of the project (those `names`, or all): its write-only values that
        name a project secret (`secret:NAME`), keyed `url`, `password` or `headers.NAME`.
        References, never values, so a declaration can be compared with what is stored."""
        with self.db.transaction() as session:
            stmt = select(ChannelRow).where(
                ChannelRow.project_uid == self._project_uid(session, project)
            )
            if names is not None:
                stmt = stmt.where(ChannelRow.name.in_(sorted(names)))
            rows = session.scalars(stmt).all()
            opened = {r.name: self.box.open(r.secrets, r.uid) if r.secrets else {} for r in rows}
        return {
            name: {
                key: value
                for key, value in _secret_values(secrets)
                if isinstance(value, str) and SECRET_REFERENCE.match(value)
            }
            for name, secrets in opened.items()
        }

    def _referenced(self, project: str, secrets: dict[str, Any]) -> dict[str, Any]:
        """Values of the form `secret:NAME` replaced by the project secret's newest value
        (NotFound names a secret that is gone)."""
        wanted: dict[str, str] = {}
        for key, value in _secret_values(secrets):
            found = SECRET_REFERENCE.match(value) if isinstance(value, str) else None
            if found:
                wanted[key] = found.group(1)
        if not wanted:
            return secrets
        if self.secret_values is None:
            raise NotFound("this platform keeps no project secrets to refer to")
        values = self.secret_values(project, wanted)
        opened = dict(secrets)
        opened["headers"] = dict(secrets.get("headers") or {})
        for key, value in values.items():
            if key.startswith("headers."):
                opened["headers"][key.removeprefix("headers.")] = value
            else:
                opened[key] = value
        return opened

    def _check_destination(self, data: s.ChannelApply) -> None:
        """Refuse a host that resolves to an internal address (sending checks again, so one
        that does not resolve yet is let through)."""
        if data.type == "email":
            field, host, port = "smtp_host", data.smtp_host, data.smtp_port
        else:
            field, host, port = "url", _host(data.url), _port(data.url)
        if not host:
            return
        try:
            self.networks.check(host, port)
        except DestinationRefused as exc:
            raise InvalidInput(f"{field}: {exc}") from None
        except Unresolvable:
            pass

    def _channel(self, session: Session, project: str, name: str) -> ChannelRow:
        return self._channels.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _channel_read(
        session: Session, row: ChannelRow, project: str, rules: builtins.list[str] | None = None
    ) -> s.ChannelRead:
        config = row.config or {}
        return s.ChannelRead(
            metadata=metadata_of(row, project=project),
            spec=s.ChannelSpec(
                description=config.get("description", ""),
                type=row.type,
                url=config.get("url"),
                headers={name: MASK for name in config.get("headers", [])},
                to=list(config.get("to") or []),
                sender=config.get("sender"),
                smtp_host=config.get("smtp_host"),
                smtp_port=int(config.get("smtp_port") or 587),
                starttls=bool(config.get("starttls", True)),
                username=config.get("username"),
                password=MASK if config.get("password") else None,
            ),
            status=s.ChannelStatus(
                rules=rules_using(session, row.project_uid, row.name) if rules is None else rules
            ),
        )


# --- pure helpers ----------------------------------------------------------------------------


def _secret_values(secrets: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """A channel's write-only values, keyed `url`, `password` or `headers.NAME`."""
    for key, value in secrets.items():
        if key == "headers":
            for header, text in (value or {}).items():
                yield f"headers.{header}", text
        else:
            yield key, value


def _rules_by_channel(session: Session, project_uids: set[str]) -> dict[tuple[str, str], list[str]]:
    """The rules that notify each channel of these projects, by (project uid, channel)."""
    if not project_uids:
        return {}
    rows = session.execute(
        select(AlertRuleRow.project_uid, AlertRuleRow.name, AlertRuleRow.spec)
        .where(AlertRuleRow.project_uid.in_(sorted(project_uids)))
        .order_by(AlertRuleRow.name)
    ).all()
    users: dict[tuple[str, str], list[str]] = {}
    for project_uid, name, spec in rows:
        for channel in (spec or {}).get("channels", []):
            users.setdefault((project_uid, channel), []).append(name)
    return users


def rules_using(session: Session, project_uid: str, channel: str) -> list[str]:
    rows = session.execute(
        select(AlertRuleRow.name, AlertRuleRow.spec)
        .where(AlertRuleRow.project_uid == project_uid)
        .order_by(AlertRuleRow.name)
    ).all()
    return [name for name, spec in rows if channel in (spec or {}).get("channels", [])]


def _merge_secrets(
    data: s.ChannelApply, stored: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    """The secrets to seal: what was given, with `****` standing for what is stored — only
    while the destination is the one the secret was given for (the same URL, or the same
    SMTP server and user), so a stored secret is never sent anywhere new."""
    secrets: dict[str, Any] = {}
    if data.url is not None:
        url = data.url
        if MASK in url:
            if stored.get("url") and url == config.get("url"):
                url = stored["url"]
            else:
                raise InvalidInput(
                    "url: '****' stands for the stored url, and this is not it: give the url"
                )
        secrets["url"] = url
    headers: dict[str, str] = {}
    old_headers = stored.get("headers") or {}
    same_url = _destination(secrets.get("url")) == _destination(stored.get("url"))
    for name, value in data.headers.items():
        if value == MASK:
            if name not in old_headers:
                raise InvalidInput(
                    f"headers.{name}: '****' keeps a stored value, and there is none"
                )
            if not same_url:
                raise InvalidInput(
                    f"headers.{name}: '****' keeps the stored value only while the url stays "
                    "the same (scheme, host, port and path); the url changed: give the value"
                )
            value = old_headers[name]
        headers[name] = value
    if headers:
        secrets["headers"] = headers
    if data.password is not None:
        password = data.password
        if password == MASK:
            if not stored.get("password"):
                raise InvalidInput("password: '****' keeps a stored password, and there is none")
            if _smtp_destination(data.smtp_host, data.smtp_port, data.username) != (
                _smtp_destination(
                    config.get("smtp_host"), config.get("smtp_port"), config.get("username")
                )
            ):
                raise InvalidInput(
                    "password: '****' keeps the stored password only while smtp_host, "
                    "smtp_port and username stay the same; they changed: give the password"
                )
            password = stored["password"]
        secrets["password"] = password
    return secrets


def _display_url(kind: str, url: Any) -> str | None:
    """How reads show a URL: a Slack URL's path is its credential, a webhook's query may
    hold one; neither is shown."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    base = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    if kind == "slack":
        return f"{base}/{MASK}"
    return base + parts.path + (f"?{MASK}" if parts.query else "")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _destination(url: Any) -> tuple[str, str, int | None, str] | None:
    """Where a URL sends: scheme, host, port (the scheme's default spelled out) and path."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").rstrip("."), port, parts.path or "/"


def _smtp_destination(host: Any, port: Any, username: Any) -> tuple[str, int, str | None]:
    return str(host or "").lower().rstrip("."), int(port or 587), username or None


def _host(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None


def _port(url: str | None) -> int:
    parts = urlsplit(url or "")
    return parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
