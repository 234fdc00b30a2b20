"""The list of built-in actions."""

from __future__ import annotations

from app.actions.airflow import airflow_actions
from app.actions.artifact import ArtifactVerify
from app.actions.base import Action
from app.actions.command import CommandRun
from app.actions.embedded_registry_actions import registry_actions
from app.actions.handoff import RunbookStart
from app.actions.http import HttpRequest
from app.actions.kubernetes import kubernetes_actions
from app.actions.kubernetes_argo import argo_actions
from app.actions.mlflow import mlflow_actions
from app.actions.notify import NotifySlack, NotifyWebhook, PagerdutyResolve, PagerdutyTrigger
from app.actions.prometheus import PrometheusQuery
from app.actions.testing import Fail, Noop, Sleep
from app.actions.wait import Wait


def all_actions() -> list[Action]:
    """Every action that ships with runbookd."""
    return [
        Noop(), Sleep(), Fail(),
        ArtifactVerify(), *registry_actions(), *mlflow_actions(), HttpRequest(), CommandRun(),
        PrometheusQuery(), Wait(), *airflow_actions(), RunbookStart(),
        *kubernetes_actions(), *argo_actions(),
        NotifySlack(), NotifyWebhook(), PagerdutyTrigger(), PagerdutyResolve(),
    ]
