"""An Airflow secrets backend that is down when the Variable `rtw_pseudonym_key` is asked of it (as a Vault or a
cloud secrets manager that cannot be reached), for the tests of the key's readers: configured by
AIRFLOW__SECRETS__BACKEND in a process of its own (Airflow builds a process's backends once). Airflow asks the
next backend then, and answers "no such Variable" when none has it."""

from __future__ import annotations

from airflow.secrets.base_secrets import BaseSecretsBackend


class DownForTheKey(BaseSecretsBackend):
    def get_variable(self, key: str) -> str | None:
        if key == "rtw_pseudonym_key":
            raise ConnectionError("the secrets store at https://vault.example.org:8200 cannot be reached")
        return None
