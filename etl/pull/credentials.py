"""Credentials of a drop zone, read from an Airflow connection URI (or its JSON form).

One parser for both callers: the DAG passes `BaseHook.get_connection(id).get_uri()`, and
`rtw pull` reads the same URI from env `AIRFLOW_CONN_<ID>` (Airflow's own convention, so one
secret serves both). Airflow is not imported here: `rtw pull` must run without it.

A URI is `type://login:password@host:port/schema?extra=value`, every part percent-encoded, extras
either as query parameters or, when not all text, as one JSON `__extra__` parameter. Nothing in
this module puts a URI, password or key in an error message or a repr.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CredentialsError(ValueError):
    """A connection is missing or unreadable; the message names the connection, never its secret."""


class Credentials(BaseModel):
    """A parsed Airflow connection. The password and the extras (keys, secrets) are not shown in reprs."""

    model_config = ConfigDict(frozen=True)

    conn_type: str
    login: str | None = None
    password: SecretStr | None = None
    host: str | None = None
    port: int | None = None
    schema_: str | None = Field(None, alias="schema")
    extra: dict[str, Any] = Field(default_factory=dict, repr=False)

    def option(self, *names: str) -> Any:
        """The first of the extras `names` that is set (Airflow providers spell some two ways)."""
        return next((self.extra[n] for n in names if self.extra.get(n) not in (None, "")), None)

    def flag(self, name: str) -> bool | None:
        value = self.extra.get(name)
        if value is None or value == "":
            return None
        return value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "yes", "on"}


def env_name(connection_id: str) -> str:
    """The environment variable Airflow (and `rtw pull`) reads a connection from."""
    return f"AIRFLOW_CONN_{connection_id.upper()}"


def connection_uri_from_env(connection_id: str) -> str | None:
    """The connection `connection_id` from env `AIRFLOW_CONN_<ID>`, or None when it is not set."""
    value = os.environ.get(env_name(connection_id), "").strip()
    return value or None


def parse_connection(value: str, *, connection_id: str = "the connection") -> Credentials:
    """Read an Airflow connection given as a URI or as Airflow's JSON form."""
    text = value.strip()
    if text.startswith("{"):
        try:
            fields = json.loads(text)
            given = fields.get("extra") or {}
            extra = json.loads(given) if isinstance(given, str) else given
            return Credentials.model_validate({**fields, "extra": extra})
        except (ValueError, TypeError, AttributeError):
            raise CredentialsError(f"{connection_id}: not a readable Airflow connection (JSON form)") from None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise CredentialsError(f"{connection_id}: not a readable Airflow connection URI") from None
    if not parts.scheme:
        raise CredentialsError(f"{connection_id}: not an Airflow connection URI (expected type://login:password@host)")
    extra = {}
    for key, item in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            try:
                loaded = json.loads(item)
            except ValueError:
                raise CredentialsError(f"{connection_id}: its __extra__ is not JSON") from None
            extra.update(loaded if isinstance(loaded, dict) else {})
        else:
            extra[key] = item
    return Credentials(
        conn_type=parts.scheme.replace("-", "_"),
        login=unquote(parts.username) if parts.username else None,
        password=SecretStr(unquote(parts.password)) if parts.password is not None else None,
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        schema=unquote(parts.path.lstrip("/")) or None,
        extra=extra,
    )
