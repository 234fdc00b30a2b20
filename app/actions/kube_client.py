"""The connection the `kubernetes.*` and `argo.*` actions share: configuration, the allow-list,
one lightkube client per run, and errors that name the cluster, the object and what to fix.

Configuration, in order: RUNBOOKD_KUBECONFIG, then runbookd's KUBECONFIG (the first file of a
colon-separated list), then the pod's service account (in-cluster). A step may pick a context
of that kubeconfig with `context:`. The API server's host must be on RUNBOOKD_HTTP_ALLOWLIST,
checked with the same rule as every other outbound request (`OutboundHttp.check`); the
client trusts no proxy or certificate variables of the environment, only the kubeconfig.

This module imports lightkube and httpx2 (about 20 MiB), so the action modules import it
inside the functions that talk to a cluster; what the catalog needs at start-up (the
parameters, the errors) lives in `kube_params`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
from lightkube import ApiError, AsyncClient, ConfigError
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, ReplicaSet, StatefulSet
from lightkube.types import PatchType

from app.actions.base import ActionContext, ActionFailed
from app.actions.kube_params import KubeConflict, KubeNotFound, KubeParams, described
from app.outbound import HostNotAllowed

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Who made a change, as `kubectl` records "kubectl-rollout" (managedFields).
FIELD_MANAGER = "runbookd"
TIMEOUT = httpx2.Timeout(15.0, connect=5.0)

Rollout = create_namespaced_resource("argoproj.io", "v1alpha1", "Rollout", "rollouts")
WORKLOADS: dict[str, Any] = {"Deployment": Deployment, "StatefulSet": StatefulSet}
RESOURCE_NAMES = {"Deployment": "deployments.apps", "StatefulSet": "statefulsets.apps",
                  "ReplicaSet": "replicasets.apps", "Rollout": "rollouts.argoproj.io"}

T = TypeVar("T")


def load_config(ctx: ActionContext, context: str | None) -> tuple[SingleConfig, str]:
    """The cluster, user and context to use, and where they came from (for messages)."""
    configured = ctx.settings.kubeconfig
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    try:
        if configured is not None or from_env:
            path = Path(configured or from_env).expanduser()
            named = "RUNBOOKD_KUBECONFIG" if configured else "KUBECONFIG"
            source = f"kubeconfig {path}, named by {named}"
            if not path.is_file():
                raise ActionFailed(f"{source}, does not exist")
            config = KubeConfig.from_file(path)
        elif (SERVICE_ACCOUNT / "token").is_file():
            source = "the pod's service account"
            config = KubeConfig.from_service_account(SERVICE_ACCOUNT)
        else:
            raise ActionFailed("no Kubernetes configuration: set RUNBOOKD_KUBECONFIG (or "
                               "KUBECONFIG) to a kubeconfig file, or run runbookd in a pod with "
                               "a service account")
        single = config.get(context)
    except ConfigError as exc:
        raise ActionFailed(f"Kubernetes configuration: {exc}") from None
    except (KeyError, TypeError, ValueError, OSError) as exc:
        # A kubeconfig that is not one (no clusters, a context naming a missing cluster...).
        raise ActionFailed(f"Kubernetes configuration is not usable: {type(exc).__name__}: "
                           f"{exc}") from None
    assert single is not None
    return single, source


class Kube:
    """One lightkube client for one action run; every error names the cluster and the call."""

    def __init__(self, ctx: ActionContext, params: KubeParams):
        config, source = load_config(ctx, params.context)
        try:
            server = ctx.http.check(config.cluster.server)
        except HostNotAllowed as exc:
            raise ActionFailed(
                f"the Kubernetes API server {exc.host!r} (from {source}) is not on the HTTP "
                "allow-list: add it to RUNBOOKD_HTTP_ALLOWLIST") from None
        except (httpx.InvalidURL, TypeError):
            raise ActionFailed(f"the Kubernetes API server {config.cluster.server!r} (from "
                               f"{source}) is not a URL") from None
        self.host = f"{server.host}:{server.port}" if server.port else str(server.host)
        self.config = config
        self.namespace = params.namespace
        self.client: AsyncClient | None = None

    async def __aenter__(self) -> Kube:
        try:
            self.client = AsyncClient(config=self.config, namespace=self.namespace,
                                      timeout=TIMEOUT, trust_env=False, lazy=False,
                                      field_manager=FIELD_MANAGER)
        except (ConfigError, OSError, ValueError, AssertionError) as exc:
            raise ActionFailed(f"Kubernetes client for {self.host}: {exc or type(exc).__name__}"
                               ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()

    async def call(self, awaitable: Awaitable[T], *, doing: str) -> T:
        """Await one API call; ActionFailed that says what answered and what to do."""
        try:
            return await awaitable
        except ApiError as exc:
            code = exc.status.code or exc.response.status_code
            kind = {404: KubeNotFound, 409: KubeConflict}.get(code, ActionFailed)
            raise kind(self._api_error(exc, doing)) from None
        except httpx2.TimeoutException as exc:
            raise ActionFailed(f"{doing}: the Kubernetes API at {self.host} did not answer in "
                               f"time ({type(exc).__name__})") from None
        except httpx2.HTTPStatusError as exc:
            raise ActionFailed(f"{doing}: {self.host} answered {exc.response.status_code} with "
                               "a body that is not a Kubernetes Status: is it the API server?",
                               ) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise ActionFailed(f"{doing}: could not reach the Kubernetes API at {self.host} "
                               f"({type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            # lightkube decodes answers with msgspec: a body that is not the object it expects.
            raise ActionFailed(f"{doing}: the Kubernetes API at {self.host} answered with an "
                               f"object it could not read ({exc})") from None

    def _api_error(self, exc: ApiError, doing: str) -> str:
        status = exc.status
        code = status.code or exc.response.status_code
        said = f"{doing}: the Kubernetes API at {self.host} answered {code}"
        if status.reason:
            said += f" {status.reason}"
        if status.message:
            said += f": {status.message}"
        hint = {401: "check the credentials of the kubeconfig or service account",
                403: "grant runbookd's identity this verb in an RBAC Role",
                409: "it changed meanwhile; run the step again to act on what it is now"}
        return f"{said} ({hint[code]})" if code in hint else said

    async def get(self, res: Any, name: str, *, doing: str) -> dict[str, Any]:
        """One object as the API returns it (a plain dict, as in kubectl's JSON)."""
        assert self.client is not None
        found = await self.call(self.client.get(res, name, namespace=self.namespace),
                                doing=doing)
        return found.to_dict()

    async def list(self, res: Any, *, labels: dict[str, str], doing: str,
                   ) -> list[dict[str, Any]]:
        """Every object of a kind in the namespace whose labels match `labels`."""
        assert self.client is not None

        async def collect() -> list[dict[str, Any]]:
            assert self.client is not None
            return [item.to_dict() async for item in
                    self.client.list(res, namespace=self.namespace, labels=labels)]

        return await self.call(collect(), doing=doing)

    async def patch(self, res: Any, name: str, body: dict[str, Any] | list[Any], *,
                    patch_type: PatchType, doing: str) -> dict[str, Any]:
        """Patch one object; returns it as the API stored it."""
        assert self.client is not None
        patched = await self.call(self.client.patch(res, name, body, namespace=self.namespace,
                                                    patch_type=patch_type), doing=doing)
        return patched.to_dict()

    async def replace(self, obj: Any, name: str, *, doing: str) -> dict[str, Any]:
        """PUT a subresource (a Scale), with the resourceVersion it carries as a precondition."""
        assert self.client is not None
        replaced = await self.call(self.client.replace(obj, name, namespace=self.namespace),
                                   doing=doing)
        return replaced.to_dict()


__all__ = ["RESOURCE_NAMES", "WORKLOADS", "Deployment", "Kube", "KubeConflict", "KubeNotFound",
           "KubeParams", "PatchType", "ReplicaSet", "Rollout", "StatefulSet", "described"]
