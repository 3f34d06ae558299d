"""Airflow 3: wait for a source's next export in its drop zone without holding a worker slot.

`DropZoneSensor` looks once (etl.pull.check_drop_zone); it succeeds at once when the source has
no drop zone, when a new export already waits, or when the mapping or credentials are wrong
(the pull step then fails with the reason, rather than the sensor waiting hours for nothing).
Otherwise it defers to `DropZoneTrigger`, which polls in the triggerer until an export appears
or the deadline passes. At the deadline the sensor succeeds with status `deadline` (the night's
run goes on with what landing holds), unless `fail_on_deadline` is set.

A wait that fails (it crashed, or waited past its task's execution timeout) is recorded as a failed pull
of the source (etl/pull/nights.py, `_wait_failed`, the sensor's own failure callback): its pull does not
run, and `rtw status` shows the night that went on without it as it shows a failed pull.

The trigger's serialised arguments hold the connection *id*, never the secret: the trigger
reads the connection when it runs (env `AIRFLOW_CONN_<ID>`, else Airflow's connection lookup), and the
pseudonymisation key from its Variable (`key_setting`); a Variable that cannot be read is a look not made
now, asked again, in the sensor's first look as in the trigger (`_look`).

This is the only module of etl/ that imports Airflow; only the DAG imports it. The DAG file is
parsed often and must stay light, so the pull library (mappings, fsspec, DuckDB via the schema)
is imported inside the methods, when a task or the triggerer runs them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from etl.config import SOURCES_DIR, Home, resolve_home
from etl.pull.credentials import connection_uri_from_env

if TYPE_CHECKING:
    from etl.pull.deliveries import DropZoneCheck, PullOutcome

# A check that ends the wait: anything but "nothing new yet" and "cannot be reached right now".
_FINAL = {"no_drop_zone", "new_export", "invalid"}


HOME_VARIABLE = "rtw_home"
KEY_VARIABLE = "rtw_pseudonym_key"  # every task of the DAG reads it through key_setting


def home_setting() -> str | None:
    """Where the DAG's tasks and sensors find the home: env RTW_HOME, else the Airflow Variable `rtw_home`
    (None: resolve_home's ./var). Read when a task runs, never at parse."""
    from airflow.sdk import Variable

    return os.environ.get("RTW_HOME") or Variable.get(HOME_VARIABLE, default=None)


class KeyUnreadable(RuntimeError):
    """A secrets backend failed to answer for the Variable `rtw_pseudonym_key` (not "no such Variable")."""


def key_setting() -> str | None:
    """The pseudonymisation key as the DAG's tasks are given it: the Airflow Variable `rtw_pseudonym_key` (None:
    env RTW_PSEUDONYM_KEY, else the home's key file). The pull ledger knows an erased patient's file by digests
    under it (etl/pull/ledger.py): without it, such a file still in the drop zone looks new. Read when a task or
    the trigger runs, never at parse, never serialised.

    Each secrets backend is asked here, in the order Airflow's `Variable.get` asks them: that takes a backend
    that fails (a Vault that cannot be reached; the Execution API's answering an error) for one without the
    Variable, logs it and asks the next, and says "not found" in the end; given a default, it handed the tasks
    no key, and the look and the pull were made without it. A backend that fails raises KeyUnreadable, naming
    the backend and why (never the key); one that denies the Variable raises AirflowSecretsBackendAccessDenied,
    as Variable.get does."""
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded
    from airflow.sdk.log import mask_secret

    for backend in ensure_secrets_backend_loaded():
        if (value := _asked(backend)) is not None:
            mask_secret(value, name=KEY_VARIABLE)  # as Variable.get: the task's logs never show it
            return str(value)
    return None


def _asked(backend: Any) -> str | None:
    """The key Variable from one secrets backend, None when it has none; KeyUnreadable when it fails."""
    from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
    from airflow.sdk.execution_time.secrets import ExecutionAPISecretsBackend

    from etl.run_record import said

    try:
        if isinstance(backend, ExecutionAPISecretsBackend):
            return _from_api_server()
        return backend.get_variable(key=KEY_VARIABLE)
    except AirflowSecretsBackendAccessDenied:
        raise
    except Exception as exc:
        logging.getLogger(__name__).warning("the secrets backend %s failed reading the Variable %s",
                                            type(backend).__name__, KEY_VARIABLE, exc_info=True)
        raise KeyUnreadable(f"the secrets backend {type(backend).__name__} failed: {said(exc)}") from None


def _from_api_server() -> str | None:
    """The key Variable as the Execution API answers a task or trigger (through its supervisor): its
    ExecutionAPISecretsBackend answers None for an error of the API server or of the request too."""
    from airflow.sdk.exceptions import AirflowRuntimeError, AirflowSecretsBackendAccessDenied, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(GetVariable(key=KEY_VARIABLE))
    if isinstance(answer, ErrorResponse):
        if answer.error == ErrorType.VARIABLE_NOT_FOUND:
            return None
        if answer.error == ErrorType.PERMISSION_DENIED:
            raise AirflowSecretsBackendAccessDenied(f"the Execution API denies the Variable {KEY_VARIABLE}")
        raise AirflowRuntimeError(answer)
    return answer.value if isinstance(answer, VariableResult) else None


def key_unread(source_id: str, exc: BaseException, not_made: str = "the drop zone is not looked at") -> str:
    """Why a source's look or pull was not made: the key Variable could not be read (`key_setting`)."""
    from etl.run_record import said

    return f"{source_id}: the Variable {KEY_VARIABLE} cannot be read ({said(exc)}): {not_made} without the key"


def pull_with_key(home: Home, source_id: str, connection_uri: str | None, sources_dir: Path) -> PullOutcome:
    """The DAG's pull of a source, given the key from the Variable (`key_setting`). A Variable that cannot be
    read is a pull not made, failed and recorded for `rtw status` (a source with a drop zone): without the key an
    erased patient's file still there looks new (etl/pull/ledger.py)."""
    from etl.pull.deliveries import not_pulled, pull_source

    try:
        key = key_setting()
    except Exception as exc:  # a secrets backend that fails or denies it
        return not_pulled(home, source_id, key_unread(source_id, exc, "nothing is pulled"), sources_dir=sources_dir)
    return pull_source(home, source_id, connection_uri=connection_uri, sources_dir=sources_dir, key_value=key)


def connection_uri(connection_id: str | None) -> str | None:
    """The URI of an Airflow Connection: env AIRFLOW_CONN_<ID> first, else Airflow's lookup."""
    if connection_id is None:
        return None
    if (from_env := connection_uri_from_env(connection_id)) is not None:
        return from_env
    from airflow.sdk import BaseHook

    return str(BaseHook.get_connection(connection_id).get_uri())


def _event(check: DropZoneCheck) -> dict[str, Any]:
    return {"source_id": check.source_id, "status": check.state.value, "files": check.waiting,
            "message": check.message}


class DropZoneTrigger(BaseTrigger):
    """Polls a source's drop zone (in a thread: the listing is blocking I/O) until a new export
    appears or `deadline` (ISO 8601, UTC) passes; one TriggerEvent either way."""

    def __init__(self, *, source_id: str, home: str, sources_dir: str, connection_id: str | None, deadline: str,
                 poke_interval: float = 300.0) -> None:
        super().__init__()
        self.source_id = source_id
        self.home = home
        self.sources_dir = sources_dir
        self.connection_id = connection_id
        self.deadline = deadline
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("etl.pull.sensor.DropZoneTrigger", {
            "source_id": self.source_id, "home": self.home, "sources_dir": self.sources_dir,
            "connection_id": self.connection_id, "deadline": self.deadline, "poke_interval": self.poke_interval})

    def _check(self) -> DropZoneCheck:
        uri = connection_uri(self.connection_id)
        return _look(Home(Path(self.home)), self.source_id, uri, Path(self.sources_dir))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from etl.pull.deliveries import DropZoneCheck, DropZoneState

        deadline = datetime.fromisoformat(self.deadline)
        last = ""
        while True:
            try:
                check = await asyncio.to_thread(self._check)
            except Exception as exc:  # the connection lookup failed: may pass, ask again
                check = DropZoneCheck(source_id=self.source_id, state=DropZoneState.UNREACHABLE,
                                      message=f"{self.source_id}: its connection cannot be read: {exc}")
            if check.state.value in _FINAL:
                yield TriggerEvent(_event(check))
                return
            if check.state is DropZoneState.UNREACHABLE:
                self.log.warning("%s", check.message)
                last = f" (last look: {check.message})"
            else:
                last = ""
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"source_id": self.source_id, "status": "deadline", "files": [],
                                    "message": f"{self.source_id}: no new export by {self.deadline}{last}"})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))


class DropZoneSensor(BaseSensorOperator):
    """Waits for a new export of `source_id` in its drop zone, deferred (no worker slot meanwhile).

    `deadline`: how long to wait (a timedelta from the start) or until when (a datetime); default:
    the mapping's `delivery.wait_minutes`. Returns (XCom) `{"source_id", "status", "files",
    "message"}` with status `new_export`, `no_drop_zone`, `invalid` or `deadline`.
    """

    template_fields = ("source_id", "sources_dir")  # the DAG renders the Variable rtw_sources_dir into it

    def __init__(self, *, source_id: str, deadline: timedelta | datetime | None = None,
                 poke_interval: timedelta | float = 300.0, home: str | None = None,
                 sources_dir: str | None = None, fail_on_deadline: bool = False, **kwargs: Any) -> None:
        theirs = kwargs.pop("on_failure_callback", None) or []
        kwargs["on_failure_callback"] = [_wait_failed, *(theirs if isinstance(theirs, list) else [theirs])]
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.source_id = source_id
        self.deadline = deadline
        self.home = home
        self.sources_dir = sources_dir
        self.fail_on_deadline = fail_on_deadline

    def _sources_dir(self) -> Path:
        return Path(self.sources_dir) if self.sources_dir else SOURCES_DIR

    def _home(self) -> Home:
        # The home the DAG's tasks use, the Variable rtw_home too: the pull ledger there says which exports
        # are already in; with ./var's (none) every export in the drop zone looked new, and the wait ended at once.
        return resolve_home(self.home or home_setting())

    def _deadline(self, connection_wait: float) -> datetime:
        if isinstance(self.deadline, datetime):
            return self.deadline if self.deadline.tzinfo else self.deadline.replace(tzinfo=UTC)
        wait = self.deadline if isinstance(self.deadline, timedelta) else timedelta(minutes=connection_wait)
        return datetime.now(UTC) + wait

    def poke(self, context: Any) -> bool:
        return _check_now(self).state.value in _FINAL

    def execute(self, context: Any) -> dict[str, Any]:
        from etl.transform.mapping import MappingError, load_mapping

        check = _check_now(self)
        if check.state.value in _FINAL:
            self.log.info("%s", check.message)
            return _event(check)
        try:
            mapping = load_mapping(self._sources_dir() / f"{self.source_id}.yaml")
        except MappingError as exc:  # changed since the check: the pull reports it
            return {"source_id": self.source_id, "status": "invalid", "files": [], "message": str(exc)}
        delivery = mapping.delivery
        assert delivery is not None
        deadline = self._deadline(delivery.wait_minutes)
        self.log.info("%s; waiting until %s", check.message, deadline.isoformat())
        self.defer(trigger=DropZoneTrigger(source_id=self.source_id, home=str(self._home().root),
                                           sources_dir=str(self._sources_dir()),
                                           connection_id=delivery.connection, deadline=deadline.isoformat(),
                                           poke_interval=float(self.poke_interval)),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "deadline" and self.fail_on_deadline:
            from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

            if self.soft_fail:
                raise AirflowSkipException(event["message"])
            raise AirflowSensorTimeout(event["message"])
        self.log.info("%s", event.get("message"))
        return event


def _check_now(sensor: DropZoneSensor) -> DropZoneCheck:
    from etl.pull.deliveries import DropZoneCheck, DropZoneState
    from etl.transform.mapping import MappingError, load_mapping

    uri = None
    try:
        mapping = load_mapping(sensor._sources_dir() / f"{sensor.source_id}.yaml")
        connection_id = mapping.delivery.connection if mapping.delivery else None
    except MappingError:
        connection_id = None  # check_drop_zone reports the mapping's error
    try:
        uri = connection_uri(connection_id)
    except Exception as exc:  # no such Connection: a setup error the pull step reports too
        return DropZoneCheck(source_id=sensor.source_id, state=DropZoneState.INVALID,
                             message=f"{sensor.source_id}: connection '{connection_id}' cannot be read: {exc}")
    return _look(sensor._home(), sensor.source_id, uri, sensor._sources_dir())


def _look(home: Home, source_id: str, uri: str | None, sources_dir: Path) -> DropZoneCheck:
    """One look at the drop zone given the key from the Variable (`key_setting`). A Variable that cannot be read
    (a secrets backend that refuses it, or fails) is a look not made now, asked again, in the task as in the
    trigger: without the key an erased patient's file still in the drop zone looks new, and would end the wait
    (etl/pull/ledger.py)."""
    from etl.pull.deliveries import DropZoneCheck, DropZoneState, check_drop_zone

    try:
        key = key_setting()
    except Exception as exc:
        return DropZoneCheck(source_id=source_id, state=DropZoneState.UNREACHABLE, message=key_unread(source_id, exc))
    return check_drop_zone(home, source_id, connection_uri=uri, sources_dir=sources_dir, key_value=key)


def _wait_failed(context: Any) -> None:
    """The sensor's failure callback: its wait failed, so the source's pull did not run; record it with the
    source's pulls, which `rtw status` reads (the verdict and the notification already say it). Never a
    second failure: a record that cannot be written is logged (etl/pull/nights.py)."""
    from etl.pull.nights import record_pull

    sensor = context["task"]
    try:
        home = sensor._home()
    except Exception as exc:  # the Variable rtw_home cannot be read: the task's log says why it failed
        sensor.log.warning("%s: the failed wait could not be recorded for rtw status: %s", sensor.source_id, exc)
        return
    record_pull(home, sensor.source_id, wait_failure(sensor.source_id, context.get("exception"),
                                                     sensor.execution_timeout))


def wait_failure(source_id: str, exc: BaseException | str | None, timeout: timedelta | None) -> str:
    """Why a source's wait for its export failed, as a failed pull's reason: a timeout in its words, an error
    as a run's reason is said (etl/run_record.py: only its type, when its text may quote a value)."""
    from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowTaskTimeout, TaskDeferralTimeout

    from etl.run_record import said

    if isinstance(exc, AirflowSensorTimeout | AirflowTaskTimeout | TaskDeferralTimeout):
        why = f"it waited past its execution timeout ({timeout or 'unset'})"
    elif isinstance(exc, BaseException):
        why = said(exc).replace("in the run's log", "in the task's log")
    else:  # failed outside its process (its worker lost): Airflow hands a message, or nothing
        why = "it ended without an outcome (killed, or its worker lost); see the task's log"
    return (f"{source_id}: waiting for its export in its drop zone failed: {why}; its pull did not run, the "
            "import went on with what landing held")
