"""A fake Kubernetes API server on 127.0.0.1 for the kubernetes.* and argo.* actions.

No real API server can run here, so this one checks what the real one checks for the calls
runbookd makes, and keeps state so tests assert the effect:
- a bearer token (401 without it), paths and verbs (404 for unknown paths and objects, 405
  for verbs it does not serve), the Content-Type of a PATCH (merge, strategic merge, JSON
  patch; strategic merge on a custom resource and anything else is 415);
- resourceVersion: a PUT or a patch whose result carries another resourceVersion than the
  stored one is 409; a PUT of a custom resource without one is 422; every change bumps it,
  a change of `spec` bumps `metadata.generation`, and a change to nothing bumps nothing;
- subresources: `/scale` (autoscaling/v1 Scale, writes spec.replicas) on Deployments,
  StatefulSets and ReplicaSets, `/status` on Rollouts (which keeps all but `status`; a write
  to the resource itself keeps the stored `status`);
- validation the actions could trip: the name in a PUT body, the template's containers, and a
  selector that must match the template's labels (422).
Simplified: a strategic merge patch is applied as a JSON merge patch (the same for the maps
runbookd patches; list merge keys are not modelled), and no controller runs: tests move
`status` themselves with `set_status`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.support.kube_patches import PatchError, json_patch, merge_patch, selector_matches
from tests.support.net import serve_app

TOKEN = "fake-kube-token-0123456789"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    subresources: tuple[str, ...]
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


KINDS = {
    ("apps", "deployments"): Kind("apps", "v1", "Deployment", ("scale", "status")),
    ("apps", "statefulsets"): Kind("apps", "v1", "StatefulSet", ("scale", "status")),
    ("apps", "replicasets"): Kind("apps", "v1", "ReplicaSet", ("scale", "status")),
    ("argoproj.io", "rollouts"): Kind("argoproj.io", "v1alpha1", "Rollout", ("status", "scale"),
                                      custom=True),
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    content_type: str
    status: int


class KubeError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as every error of the API server is."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


@dataclass
class FakeKube:
    token: str = TOKEN
    url: str = ""
    # (plural, namespace, name) -> stored object
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # False: a Rollout CRD without the status subresource (Argo Rollouts v0.9).
    rollout_status_subresource: bool = True
    # Run one each before a write is handled: what a controller does between a read and a write.
    before_write: list[Callable[[], None]] = field(default_factory=list)
    _versions: itertools.count = field(default_factory=lambda: itertools.count(100))

    # -- state, for tests ------------------------------------------------------------------

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as created: uid, generation 1, a fresh resourceVersion."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(plural, namespace, name)])

    def set_status(self, plural: str, namespace: str, name: str, **status: Any) -> None:
        """What a controller would write: merge into `status`, bump resourceVersion."""
        stored = self.objects[(plural, namespace, name)]
        stored["status"] = merge_patch(stored.get("status", {}), status)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))

    def writes(self) -> list[Call]:
        """Every call that asked to change something (whatever the answer)."""
        return [c for c in self.calls if c.method not in ("GET", "HEAD")]

    def kubeconfig(self, path: Path, *, token: str | None = None, context: str = "fake",
                   server: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig for this server (http, bearer token) as kubectl would read it."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": server or self.url}}],
            "users": [{"name": context, "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    # -- the API ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise KubeError(401, "Unauthorized", "Unauthorized")
            body = await request.body()
            if request.method not in ("GET", "HEAD") and self.before_write:
                self.before_write.pop(0)()
            code, answer = self._route(request.method, request.url.path,
                                       dict(request.query_params), content_type, body)
        except KubeError as exc:
            code, answer = exc.code, status_body(exc.code, exc.reason, exc.message)
        self.calls.append(Call(request.method, request.url.path, content_type, code))
        return Response(json.dumps(answer), status_code=code, media_type="application/json")

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str,
               body: bytes) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        # apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/{subresource}]]
        if len(parts) < 6 or parts[0] != "apis" or parts[3] != "namespaces":
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        group, version, namespace, plural = parts[1], parts[2], parts[4], parts[5]
        kind = KINDS.get((group, plural))
        if kind is None or kind.version != version or len(parts) > 8:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 6:
            if method != "GET":
                raise KubeError(405, "MethodNotAllowed", f"{method} is not served on a list")
            return 200, self._list(kind, plural, namespace, query.get("labelSelector", ""))
        name = parts[6]
        sub = parts[7] if len(parts) == 8 else None
        if sub is not None and (sub not in kind.subresources or (
                kind.custom and sub == "status" and not self.rollout_status_subresource)):
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        stored = self.objects.get((plural, namespace, name))
        if stored is None:
            raise KubeError(404, "NotFound", f'{plural}.{group} "{name}" not found')
        if method == "GET":
            return 200, self._view(kind, stored, sub)
        if method == "PATCH":
            patched = self._patch(kind, self._view(kind, stored, sub), content_type, body)
        elif method == "PUT":
            patched = self._put(kind, sub, name, body)
        else:
            raise KubeError(405, "MethodNotAllowed", f"{method} is not served on {plural}")
        return 200, self._store(kind, plural, stored, sub, patched)

    def _list(self, kind: Kind, plural: str, namespace: str, selector: str) -> dict[str, Any]:
        try:
            items = [copy.deepcopy(obj) for (p, ns, _), obj in sorted(self.objects.items())
                     if p == plural and ns == namespace
                     and selector_matches(selector, obj["metadata"].get("labels", {}))]
        except PatchError as exc:
            raise KubeError(400, "BadRequest", str(exc)) from None
        for item in items:  # a list's items carry no kind
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                "metadata": {"resourceVersion": str(next(self._versions))}, "items": items}

    @staticmethod
    def _view(kind: Kind, stored: dict[str, Any], sub: str | None) -> dict[str, Any]:
        if sub != "scale":
            return copy.deepcopy(stored)
        meta = stored["metadata"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp")},
                "spec": {"replicas": stored.get("spec", {}).get("replicas", 1)},
                "status": {"replicas": stored.get("status", {}).get("replicas", 0)}}

    @staticmethod
    def _patch(kind: Kind, current: dict[str, Any], content_type: str,
               body: bytes) -> dict[str, Any]:
        accepted = (MERGE, JSON_PATCH) if kind.custom else (MERGE, STRATEGIC, JSON_PATCH)
        if content_type not in accepted:
            raise KubeError(415, "UnsupportedMediaType",
                            f"the body of the request was in an unknown format - accepted media "
                            f"types include: {', '.join(accepted)}")
        try:
            patch = json.loads(body)
        except ValueError:
            raise KubeError(400, "BadRequest", "the patch is not valid JSON") from None
        try:
            if content_type == JSON_PATCH:
                return json_patch(current, patch)
            if not isinstance(patch, dict):
                raise PatchError("a merge patch must be a JSON object")
            return merge_patch(current, patch)
        except PatchError as exc:
            raise KubeError(422, "Invalid", f"the server rejected our request: {exc}") from None

    @staticmethod
    def _put(kind: Kind, sub: str | None, name: str, body: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(body)
        except ValueError:
            raise KubeError(400, "BadRequest", "the body is not valid JSON") from None
        wanted = ("autoscaling/v1", "Scale") if sub == "scale" else (kind.api_version, kind.kind)
        if not isinstance(obj, dict) or (obj.get("apiVersion"), obj.get("kind")) != wanted:
            raise KubeError(400, "BadRequest", f"the body must be a {wanted[1]} of {wanted[0]}")
        if obj.get("metadata", {}).get("name") != name:
            raise KubeError(400, "BadRequest",
                            f"the name of the object ({obj.get('metadata', {}).get('name')}) "
                            f"does not match the name on the URL ({name})")
        if kind.custom and not obj["metadata"].get("resourceVersion"):
            raise KubeError(422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: "
                                            "must be specified for an update")
        return obj

    def _store(self, kind: Kind, plural: str, stored: dict[str, Any], sub: str | None,
               changed: dict[str, Any]) -> dict[str, Any]:
        meta = stored["metadata"]
        sent = changed.get("metadata", {}).get("resourceVersion")
        if sent and sent != meta["resourceVersion"]:
            raise KubeError(409, "Conflict", f'Operation cannot be fulfilled on {plural}.'
                            f'{kind.group} "{meta["name"]}": the object has been modified; '
                            "please apply your changes to the latest version and try again")
        if sub == "scale":
            replicas = changed.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise KubeError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}: "
                                                "must be greater than or equal to 0")
            new = merge_patch(stored, {"spec": {"replicas": replicas}})
        elif sub == "status":
            new = {**copy.deepcopy(stored), "status": changed.get("status", {})}
        else:
            new = {**changed, "metadata": {**changed.get("metadata", {}),
                                           **{k: meta[k] for k in ("uid", "generation",
                                                                   "creationTimestamp")}}}
            if self._has_status_subresource(kind):
                # With a status subresource, a write to the resource keeps the stored status.
                new.pop("status", None)
                if "status" in stored:
                    new["status"] = copy.deepcopy(stored["status"])
            if new["metadata"].get("name") != meta["name"]:
                raise KubeError(422, "Invalid", "metadata.name: field is immutable")
        new["metadata"]["resourceVersion"] = meta["resourceVersion"]
        self._validate(kind, new)
        if new == stored:
            return self._view(kind, stored, sub)
        if new.get("spec") != stored.get("spec"):
            new["metadata"]["generation"] = meta["generation"] + 1
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[(plural, meta["namespace"], meta["name"])] = new
        return self._view(kind, new, sub)

    def _has_status_subresource(self, kind: Kind) -> bool:
        return "status" in kind.subresources and (not kind.custom
                                                  or self.rollout_status_subresource)

    @staticmethod
    def _validate(kind: Kind, obj: dict[str, Any]) -> None:
        if kind.kind not in ("Deployment", "StatefulSet", "ReplicaSet"):
            return
        spec = obj.get("spec", {})
        template = spec.get("template", {})
        if not template.get("spec", {}).get("containers"):
            raise KubeError(422, "Invalid",
                            "spec.template.spec.containers: Required value")
        wanted = spec.get("selector", {}).get("matchLabels", {})
        labels = template.get("metadata", {}).get("labels", {})
        if any(labels.get(k) != v for k, v in wanted.items()):
            raise KubeError(422, "Invalid", "spec.template.metadata.labels: Invalid value: "
                                            "`selector` does not match template `labels`")


@contextlib.asynccontextmanager
async def run_fake_kube() -> AsyncIterator[FakeKube]:
    """A fresh fake API server on 127.0.0.1, for one test."""
    fake = FakeKube()
    app = FastAPI()
    app.add_api_route("/{path:path}", fake.handle,
                      methods=["GET", "PUT", "PATCH", "POST", "DELETE"])
    async with serve_app(app) as server:
        fake.url = server.url
        yield fake


# -- objects as a cluster holds them -----------------------------------------------------------

def _template(labels: dict[str, str], image: str) -> dict[str, Any]:
    return {"metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": "server", "image": image}]}}


def add_deployment(fake: FakeKube, namespace: str, name: str, *, images: list[str],
                   replicas: int = 3) -> dict[str, Any]:
    """A Deployment rolled out once per image (the last is current, fully available), with the
    ReplicaSet the controller keeps for each revision."""
    labels = {"app": name}
    deployment = fake.add("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {"deployment.kubernetes.io/revision": str(len(images))}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                 "strategy": {"type": "RollingUpdate"},
                 "template": _template(labels, images[-1])},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": replicas, "availableReplicas": replicas,
                   "conditions": [{"type": "Progressing", "status": "True",
                                   "reason": "NewReplicaSetAvailable"}]}})
    for revision, image in enumerate(images, 1):
        pod_hash = hashlib.sha256(f"{name} {image} {revision}".encode()).hexdigest()[:10]
        with_hash = {**labels, "pod-template-hash": pod_hash}
        current = revision == len(images)
        fake.add("replicasets", {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-{pod_hash}", "namespace": namespace,
                         "labels": dict(with_hash),
                         "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                         "deployment.kubernetes.io/desired-replicas":
                                             str(replicas)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": name, "controller": True,
                                              "blockOwnerDeletion": True,
                                              "uid": deployment["metadata"]["uid"]}]},
            "spec": {"replicas": replicas if current else 0,
                     "selector": {"matchLabels": dict(with_hash)},
                     "template": _template(with_hash, image)},
            "status": {"replicas": replicas if current else 0}})
    return deployment


CANARY_STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
                {"setWeight": 80}]


def add_rollout(fake: FakeKube, namespace: str, name: str, *, stable: str = "6b7f9c4d5",
                canary: str | None = None, step: int | None = None,
                weight: int | None = None, paused: bool = False,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An Argo Rollout with a canary strategy: fully promoted when `canary` is None, else
    updating from `stable` to `canary`, at `step` (paused there when `paused`)."""
    updating = canary is not None and canary != stable
    status: dict[str, Any] = {
        "observedGeneration": "1", "stableRS": stable, "currentPodHash": canary or stable,
        "replicas": 5, "availableReplicas": 5, "updatedReplicas": 1 if updating else 5,
        "phase": "Paused" if paused else ("Progressing" if updating else "Healthy"),
        "message": "CanaryPauseStep" if paused else "",
        "currentStepIndex": step if updating else len(steps or CANARY_STEPS),
    }
    if paused:
        status["pauseConditions"] = [{"reason": "CanaryPauseStep",
                                      "startTime": "2026-01-01T00:00:00Z"}]
        status["controllerPause"] = True
    if weight is not None:
        status["canary"] = {"weights": {"canary": {"weight": weight, "podTemplateHash": canary},
                                        "stable": {"weight": 100 - weight,
                                                   "podTemplateHash": stable}}}
    return fake.add("rollouts", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": name}},
                 "template": _template({"app": name}, f"{name}:new"),
                 "strategy": {"canary": {"steps": steps or CANARY_STEPS}}},
        "status": status})
