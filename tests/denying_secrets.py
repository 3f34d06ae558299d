"""An Airflow secrets backend that denies the Variable `rtw_pseudonym_key` (as a secrets backend whose policy
refuses it does), for the tests of the DAG's sensor: configured by AIRFLOW__SECRETS__BACKEND in a process of
its own (Airflow builds a process's backends once)."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
from airflow.secrets.base_secrets import BaseSecretsBackend


class DeniedKey(BaseSecretsBackend):
    def get_variable(self, key: str) -> str | None:
        if key == "rtw_pseudonym_key":
            raise AirflowSecretsBackendAccessDenied(f"the policy denies {key}")
        return None
