"""Telling the data managers that a nightly run failed: an e-mail and/or a webhook, or nothing.

Who is told is read when a run fails, from Airflow Variables (so any secrets backend works):

- `rtw_notify_to`: e-mail recipients, comma separated. Unset: no e-mail.
- `rtw_notify_smtp_conn`: the id of the SMTP Connection (default `smtp_default`), used through the
  SMTP provider's `SmtpHook`; its extras give `from_email`, `disable_tls`, `disable_ssl`, `timeout`.
- `rtw_notify_webhook_conn`: the id of a Connection whose URL receives the failure as JSON
  (default `rtw_notify_webhook`). No such Connection: no webhook.

Nothing configured: nothing is sent and nothing fails. A notification that cannot be sent is
logged (never with the Connection's URL or password) and never fails the run a second time.

Three places send it, so that a run sends one message: `on_source_failure`, the `verdict`
task's callback, when sources failed, were held, could not be pulled or left files waiting too long in their
drop zones (the first failed source's verdict tells of them all); `on_run_step_failure`, from the publish task
as it fails, when plan_run or publish failed, naming the task and the reason (`on_stopped_after_publishing` when
publish was stopped once it had published: the run and each source as judged); and `on_run_failure`, the DAG's,
when the run failed otherwise (a task killed, the run timed out). The message is built from plain values
(`RunFailure`), without Airflow.
"""

from __future__ import annotations

import html
import json
import logging
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("rtw.notify")

PUBLISH_TASK = "publish"
PLAN_TASK = "plan_run"
VERDICT_TASK = "verdict"
FAILURE_KEY = "failure"  # the XCom plan_run leaves when it fails: the exception, on one line
TOLD_KEY = "told"  # the XCom publish leaves once it has sent the run's failure message
NOT_LOADED = ("failed", "held")  # SourceStatus values of a source that keeps its last good data
WAITING = "files waiting in its drop zone"  # a source loaded as it was, whose sender left files too long
_WEBHOOK_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class SourceFailure:
    """A source this run did not load, and why."""

    source_id: str
    status: str  # failed or held
    reason: str


@dataclass(frozen=True)
class RunFailure:
    """What a message about a failed run says."""

    dag_run_id: str
    run_id: str | None  # the warehouse's run id (meta.run); None when the run failed before publishing
    sources: tuple[SourceFailure, ...] = ()
    loaded: tuple[str, ...] = ()
    report: str | None = None
    cause: str | None = None  # why the run failed when no source says it: a task, a timeout


def failure_from_published(dag_run_id: str, published: Mapping[str, Any], *, cause: str | None = None) -> RunFailure:
    """The failure as the publish task handed it over (see dags/nightly_import.py, `publish`)."""
    verdicts: Mapping[str, Mapping[str, Any]] = published.get("verdicts", {})
    sources = tuple(_source_failure(source_id, v) for source_id, v in verdicts.items()
                    if v["status"] in NOT_LOADED or v.get("pull") or v.get("waiting"))
    return RunFailure(dag_run_id=dag_run_id, run_id=published.get("run_id"), sources=sources,
                      loaded=tuple(published.get("sources_changed", [])), report=published.get("report"),
                      cause=cause)


def _source_failure(source_id: str, verdict: Mapping[str, Any]) -> SourceFailure:
    """A failed pull, files waiting too long in the drop zone, a failed or held load, or some of them: the status
    and every reason."""
    reasons = [verdict[k] for k in ("pull", "waiting") if verdict.get(k)]
    if verdict["status"] in NOT_LOADED:
        reasons.append(verdict.get("reason") or "no reason recorded")
        return SourceFailure(source_id, verdict["status"], "; ".join(reasons))
    return SourceFailure(source_id, "pull failed" if verdict.get("pull") else WAITING, "; ".join(reasons))


def subject(failure: RunFailure) -> str:
    if failure.sources:
        names = ", ".join(f"{s.source_id} {s.status}" for s in failure.sources)
        return f"[rtw] nightly import {failure.run_id or failure.dag_run_id}: {names}"
    return f"[rtw] nightly import {failure.run_id or failure.dag_run_id} failed"


def message_text(failure: RunFailure) -> str:
    lines = [f"Run {failure.run_id or '(none: it failed before publishing)'}, "
             f"Airflow DAG run {failure.dag_run_id}."]
    if failure.cause:
        lines += ["", f"The run failed: {failure.cause}."]
    if failure.sources:
        lines += ["", f"Not loaded, not pulled or left files waiting this run ({len(failure.sources)}); a source not "
                      "loaded keeps its last good data:"]
        lines += [f"- {s.source_id} ({s.status}): {s.reason}" for s in failure.sources]
    if failure.loaded:
        lines += ["", f"Loaded: {', '.join(failure.loaded)}"]
    lines += ["", f"Report: {failure.report}" if failure.report else
              "Report: none written for this run" if failure.run_id else
              "Report: none written for this run (the warehouse is unchanged)"]
    return "\n".join(lines) + "\n"


def message_html(failure: RunFailure) -> str:
    return f"<pre>{html.escape(message_text(failure))}</pre>"


def payload(failure: RunFailure) -> dict[str, Any]:
    """The webhook's JSON: the text for chat tools, the facts for machines."""
    facts = asdict(failure)
    facts["sources"] = [asdict(s) for s in failure.sources]
    return {"text": f"{subject(failure)}\n{message_text(failure)}", **facts}


def send(failure: RunFailure) -> list[str]:
    """Send the failure where the Variables say; what was sent, for the log (never a URL or password)."""
    sent: list[str] = []
    recipients = _variable("rtw_notify_to")
    if recipients:
        conn_id = _variable("rtw_notify_smtp_conn") or "smtp_default"
        try:
            if _send_email(conn_id, recipients, failure):
                sent.append(f"e-mail to {recipients} through Connection {conn_id}")
        except Exception:  # a notification must never fail the run twice
            log.exception("the failure e-mail through Connection %s could not be sent", conn_id)
    webhook_id = _variable("rtw_notify_webhook_conn") or "rtw_notify_webhook"
    connection = _connection(webhook_id)
    if connection is not None:
        try:
            post_json(webhook_url(connection), payload(failure))
            sent.append(f"webhook of Connection {webhook_id}")
        except Exception:
            log.exception("the failure webhook of Connection %s could not be called", webhook_id)
    log.info("run %s failed; told: %s", failure.run_id or failure.dag_run_id, "; ".join(sent) or "nobody "
             "(set the Airflow Variable rtw_notify_to or the Connection rtw_notify_webhook)")
    return sent


def on_source_failure(context: Mapping[str, Any]) -> None:
    """The `verdict` task's on_failure_callback: the first failed source's verdict tells of them all."""
    ti = context["ti"]
    published = ti.xcom_pull(task_ids=PUBLISH_TASK)
    failure = failure_from_published(str(context["run_id"]), published or {})
    if not failure.sources:  # the verdict itself broke, not its source: the DAG's callback skips verdicts
        send(RunFailure(dag_run_id=failure.dag_run_id, run_id=failure.run_id, report=failure.report,
                        cause=f"the task {VERDICT_TASK}[{ti.map_index}] failed; its log says why"))
        return
    in_order: list[str] = published.get("sources", [])
    failed = {s.source_id for s in failure.sources}
    first = next((index for index, source_id in enumerate(in_order) if source_id in failed), None)
    if ti.map_index == first:  # verdict is mapped over the sources, in this order
        send(failure)


def on_run_step_failure(context: Mapping[str, Any], publish_failed: str | None) -> None:
    """From inside the publish task, as it fails: the run failed before any source could be judged.

    `publish_failed`: why publish failed (the exception, on one line), or None when there was no plan to
    publish: then the cause is the plan_run's, with the reason it left (FAILURE_KEY)."""
    ti = context["ti"]
    if publish_failed is not None:
        cause = f"the task {PUBLISH_TASK} failed: {publish_failed}"
    else:
        try:
            why = _pulled(ti, PLAN_TASK, FAILURE_KEY)
        except Exception:  # the message goes out all the same
            log.warning("the reason plan_run left could not be read", exc_info=True)
            why = None
        cause = f"the task {PLAN_TASK} failed: {why}" if why else f"the task {PLAN_TASK} failed; its log says why"
    send(RunFailure(dag_run_id=str(context["run_id"]), run_id=None, cause=cause))
    _told(ti)


def _told(ti: Any) -> None:
    """publish sent the run's message: the DAG's callback, handed publish as the task that failed, sends none."""
    try:
        ti.xcom_push(key=TOLD_KEY, value=True)
    except Exception:  # the DAG's callback then tells of the run too: twice rather than never
        log.warning("could not record that the run's failure was told", exc_info=True)


def on_stopped_after_publishing(context: Mapping[str, Any], published: Mapping[str, Any]) -> None:
    """From inside the publish task, stopped (`published["stop"]`) once its warehouse went live: the run is
    published, its marts and report not written (the next run's repair writes them); the sources as judged, their
    verdict tasks upstream_failed. Sent in place of `on_run_step_failure`'s "the warehouse is unchanged"."""
    cause = (f"the task {PUBLISH_TASK} published run {published['run_id']}, then was {published['stop']}, before it "
             "wrote the marts and the report (the next run writes them)")
    send(failure_from_published(str(context["run_id"]), published, cause=cause))
    _told(context["ti"])


def on_run_failure(context: Mapping[str, Any]) -> None:
    """The DAG's on_failure_callback: a run that failed other than by its sources (they have told), and
    that publish has not told of (it was killed, or the run timed out)."""
    ti = context.get("ti")
    if ti is not None and ti.task_id == VERDICT_TASK:
        return  # the sources failed or were held: on_source_failure has sent the message
    reason = str(context.get("reason") or "failed")
    if ti is not None and ti.task_id == PUBLISH_TASK and reason != "timed_out" and _publish_told(ti):
        return
    if ti is None:
        cause = f"the DAG run ended: {reason}"
    else:
        index = f"[{ti.map_index}]" if getattr(ti, "map_index", -1) >= 0 else ""
        cause = f"the task {ti.task_id}{index} failed ({reason}); its log says why"
    send(RunFailure(dag_run_id=str(context.get("run_id")), run_id=None, cause=cause))


def _publish_told(ti: Any) -> bool:
    """Whether publish sent the run's message before it failed. When it cannot be asked (`airflow dags test`
    runs the callback where no XCom can be read; there a task that dies ends the whole test), it did."""
    try:
        return bool(_pulled(ti, PUBLISH_TASK, TOLD_KEY))
    except Exception:
        return True


def _pulled(ti: Any, task_id: str, key: str) -> Any:
    """What an unmapped task of this run left under `key` (None: nothing), asked from any task instance."""
    left = ti.xcom_pull(task_ids=[task_id], key=key)  # a list: whatever the asking task's map index
    return left[0] if left else None


def webhook_url(connection: Any) -> str:
    """The URL of a webhook Connection: its `url` extra, else the URL its fields spell."""
    url = connection.extra_dejson.get("url")
    if not url:
        scheme = connection.conn_type if connection.conn_type in ("http", "https") else "https"
        port = f":{connection.port}" if connection.port else ""
        url = f"{scheme}://{connection.host}{port}/{(connection.schema or '').lstrip('/')}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("a webhook URL must be http or https")
    return str(url)


def post_json(url: str, body: Mapping[str, Any]) -> None:
    # Only http(s) URLs get here (webhook_url checks): urlopen would read file:// too.
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=_WEBHOOK_TIMEOUT_SECONDS) as response:
        response.read()


def _send_email(conn_id: str, recipients: str, failure: RunFailure) -> bool:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    if _connection(conn_id) is None:
        log.warning("rtw_notify_to is set but there is no SMTP Connection %s: no e-mail sent", conn_id)
        return False
    with SmtpHook(smtp_conn_id=conn_id) as smtp:
        smtp.send_email_smtp(to=recipients, subject=subject(failure), html_content=message_html(failure),
                             from_email=smtp.from_email or f"rtw@{socket.getfqdn()}")
    return True


def _variable(key: str) -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    return str(value).strip() or None if value is not None else None


def _connection(conn_id: str) -> Any:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
