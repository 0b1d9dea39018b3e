"""A test-side kubelet for optimizer pods: runs their command for real, on this machine.

In the local control plane kwok fakes every pod, except those labelled
app.kubernetes.io/component=optimizer (or artifact-cleanup),
which it leaves alone. This executor picks those pods up once
kube-scheduler has bound them, runs the container's command locally (the real `modeldeploy
optimize`) with the pod's environment, volumes mapped to local folders (a PersistentVolumeClaim is
`<storage root>/<namespace>/<claim>`, an emptyDir a temporary folder, a hostPath itself), and reports
back through the pods/status subresource what a kubelet would: Running, then Succeeded or Failed
with the exit code and the termination message. The Job controller takes it from there. Like a
kubelet, it stops a container whose pod is deleted: SIGTERM, then SIGKILL after the grace period
(a deleted Job's pods must not keep running as orphan processes).

Like a kubelet it refuses to start a container whose Secret is missing
(CreateContainerConfigError) and retries until the Secret appears. It talks to the API server through
the dev cluster's own client (kubeapi.KubeApi, as the admin), never the operator's: reading Secrets
is a kubelet's business, not the product's.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster.kubeapi import ApiError, KubeApi

log = logging.getLogger(__name__)
# The optimizer's pods and the artifact cleanup Jobs' pods (same image, `modeldeploy prune-artifacts`).
SELECTOR = "app.kubernetes.io/component in (optimizer,artifact-cleanup)"
# Other pods opt in with this label (kwok's stages skip them too): their init containers run for real
# here, and the main container is reported running without being run (TF Serving is not installed).
LOCAL_KUBELET_LABEL = "modeldeploy.io/local-kubelet"
MESSAGE_LIMIT = 4096  # the kubelet's limit for a termination message
GRACE_SECONDS = 10.0  # SIGTERM, then SIGKILL after this long (a pod's default grace is 30 s)


class PodConfigError(Exception):
    """The pod cannot start (what a kubelet reports as CreateContainerConfigError)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PreparedPod:
    argv: list[str]
    env: dict[str, str]
    termination_file: Path
    scratch: Path


class JobPodExecutor:
    """Runs optimizer pods of one namespace (or all) until stopped. Use as a context manager."""

    def __init__(
        self,
        kube: KubeApi,
        storage_root: Path,
        namespace: str | None = None,
        poll_seconds: float = 0.5,
        python: str = sys.executable,
    ) -> None:
        self.kube = kube
        self.storage_root = storage_root
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.python = python
        self._stop = threading.Event()
        self._started: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._loop: threading.Thread | None = None
        self.runs: list[tuple[str, int]] = []  # (pod name, exit code), for tests
        self.stopped: list[str] = []  # pods whose process was stopped because the pod was deleted
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # pod uid -> its running container
        self._procs_lock = threading.Lock()
        self.errors: list[str] = []  # the executor's own failures, for tests

    def __enter__(self) -> JobPodExecutor:
        self._loop = threading.Thread(target=self._run, name="optimizer-executor", daemon=True)
        self._loop.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=10)
        for thread in self._threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                pods = self.kube.list_pods(self.namespace, SELECTOR)
                pods += self.kube.list_pods(self.namespace, f"{LOCAL_KUBELET_LABEL}=true")
            except Exception as exc:  # the API server may be going away at teardown
                log.debug("executor: cannot list pods: %s", exc)
                continue
            self._stop_deleted(pods)
            for pod in pods:
                uid = pod["metadata"]["uid"]
                bound = pod.get("spec", {}).get("nodeName")
                phase = pod.get("status", {}).get("phase", "Pending")
                if uid in self._started or not bound or phase != "Pending" or pod["metadata"].get("deletionTimestamp"):
                    continue
                if pod["metadata"].get("labels", {}).get(LOCAL_KUBELET_LABEL) == "true":
                    self._started.add(uid)
                    thread = threading.Thread(
                        target=self._guarded, args=(self._start_with_init_containers, pod), daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
                    continue
                try:
                    prepared = self._prepare(pod, pod["spec"]["containers"][0])
                except PodConfigError as exc:
                    self._report_waiting(pod, "CreateContainerConfigError", str(exc))
                    continue
                self._started.add(uid)
                thread = threading.Thread(target=self._guarded, args=(self._execute, pod, prepared), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _stop_deleted(self, pods: list[dict[str, Any]]) -> None:
        """SIGTERM the process of every pod that is gone or being deleted (only after a good list)."""
        live = {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}
        with self._procs_lock:
            doomed = [(uid, proc) for uid, proc in self._procs.items() if uid not in live and proc.poll() is None]
        for uid, proc in doomed:
            log.info("executor: pod %s was deleted: stopping its process %d", uid, proc.pid)
            with self._procs_lock:
                self._procs.pop(uid, None)
            self.stopped.append(uid)
            proc.terminate()
            threading.Thread(target=self._kill_after_grace, args=(proc,), daemon=True).start()

    @staticmethod
    def _kill_after_grace(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()

    # -- the pod's environment ----------------------------------------------------------------------
    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.kube.get_secret(namespace, name)
        if secret is None:
            raise PodConfigError(f'secret "{name}" not found')
        data = secret.get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _key_files(self, namespace: str, volume: dict[str, Any], path: Path) -> Path:
        """A Secret or ConfigMap volume (its `items` only, when listed) as files, like a kubelet writes them."""
        if "secret" in volume:
            source, name = volume["secret"], volume["secret"]["secretName"]
            data = self._secret(namespace, name)
        else:
            source, name = volume["configMap"], volume["configMap"]["name"]
            config_map = self.kube.get_config_map(namespace, name)
            if config_map is None:
                raise PodConfigError(f'configmap "{name}" not found')
            data = dict(config_map.get("data") or {})
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        path.mkdir(parents=True)
        for item in items:
            if item["key"] not in data:
                raise PodConfigError(f'volume {volume["name"]}: key "{item["key"]}" not found in {name}')
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
            target.chmod(source.get("defaultMode", 0o644) & 0o777 | 0o400)
        return path

    def _prepare(self, pod: dict[str, Any], container: dict[str, Any]) -> PreparedPod:
        namespace = pod["metadata"]["namespace"]
        spec = pod["spec"]
        scratch = Path(tempfile.mkdtemp(prefix=f"pod-{pod['metadata']['name']}-"))
        volumes: dict[str, Path] = {}
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                path = self.storage_root / namespace / volume["persistentVolumeClaim"]["claimName"]
                path.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                path = scratch / "volumes" / volume["name"]
                path.mkdir(parents=True)
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            elif "secret" in volume or ("configMap" in volume and "items" in volume["configMap"]):
                path = self._key_files(namespace, volume, scratch / "volumes" / volume["name"])
            elif "configMap" in volume or "projected" in volume:
                path = scratch / "volumes" / volume["name"]
                path.mkdir(parents=True)
                sources = volume.get("projected", {}).get("sources", [{"configMap": volume.get("configMap")}])
                for source in sources:
                    if "configMap" not in source:
                        raise PodConfigError(f"volume {volume['name']}: only ConfigMap projections are supported here")
                    name = source["configMap"]["name"]
                    config_map = self.kube.get_config_map(namespace, name)
                    if config_map is None:
                        raise PodConfigError(f'configmap "{name}" not found')
                    for key, value in (config_map.get("data") or {}).items():
                        (path / key).write_text(value)
            else:
                raise PodConfigError(
                    f"volume {volume['name']}: only PVC, emptyDir, hostPath, Secret and ConfigMap volumes are "
                    "supported here"
                )
            volumes[volume["name"]] = path
        mounts = {m["mountPath"]: volumes[m["name"]] / m.get("subPath", "") for m in container.get("volumeMounts", [])}
        termination_file = scratch / "termination-log"
        mounts[container.get("terminationMessagePath", "/dev/termination-log")] = termination_file

        def local(text: str) -> str:
            for mount_path in sorted(mounts, key=len, reverse=True):
                if text == mount_path or text.startswith(mount_path + "/"):
                    return str(mounts[mount_path]) + text[len(mount_path) :]
                marker = f"={mount_path}"
                if marker in text:
                    prefix, _, rest = text.partition(marker)
                    if rest == "" or rest.startswith("/"):
                        return f"{prefix}={mounts[mount_path]}{rest}"
                if f"://{mount_path}" in text:  # file:///mnt/... URIs
                    return text.replace(f"://{mount_path}", f"://{mounts[mount_path]}", 1)
            return text

        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")}
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                prefix = source.get("prefix", "")
                env.update({prefix + k: v for k, v in self._secret(namespace, source["secretRef"]["name"]).items()})
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = local(var["value"])
            elif "secretKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self._secret(namespace, ref["name"]).get(ref["key"], "")
        command = list(container.get("command", []))
        head: list[str] = []
        if command[:1] == ["modeldeploy"]:
            # Our interpreter is a path on this machine: it must not be mapped like the pod's paths
            # (it may well live under /tmp, which the pod mounts as an emptyDir).
            head, command = [self.python, "-m", "modeldeploy.cli"], command[1:]
        argv = head + [local(a) for a in [*command, *container.get("args", [])]]
        return PreparedPod(argv, env, termination_file, scratch)

    # -- running and reporting ----------------------------------------------------------------------
    def _patch(self, pod: dict[str, Any], status: dict[str, Any], *, final: bool = False) -> None:
        """Report a pod's status. A `final` one (the container's exit) is retried while the API server
        is away, as a kubelet does: an optimizer that finished during an outage must not be lost (its
        pod would stay Running and its Job never complete). Given up only when the pod is gone or
        the executor stops."""
        meta = pod["metadata"]
        delay = 0.2
        while True:
            try:
                self.kube.patch_pod_status(meta["namespace"], meta["name"], status)
                return
            except ApiError as exc:
                gone = exc.status in (404, 409, 422)
                error: Exception = exc
            except Exception as exc:  # the API server is down or restarting
                gone, error = False, exc
            if not final or gone or self._stop.is_set():
                log.warning("executor: cannot update pod %s/%s: %s", meta["namespace"], meta["name"], error)
                return
            log.info(
                "executor: pod %s/%s: status not reported yet (%s); retrying", meta["namespace"], meta["name"], error
            )
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)

    def _report_waiting(self, pod: dict[str, Any], reason: str, message: str) -> None:
        name = pod["spec"]["containers"][0]["name"]
        current = pod.get("status", {}).get("containerStatuses") or [{}]
        if current[0].get("state", {}).get("waiting", {}).get("message") == message:
            return
        log.info("executor: pod %s cannot start: %s", pod["metadata"]["name"], message)
        self._patch(
            pod,
            {
                "containerStatuses": [
                    {
                        "name": name,
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ]
            },
        )

    def _run_container(self, pod: dict[str, Any], container: dict[str, Any], prepared: PreparedPod) -> tuple[int, str]:
        """Run one container's command to completion: (exit code, termination message)."""
        log_path = (
            self.storage_root
            / "logs"
            / f"{pod['metadata']['namespace']}.{pod['metadata']['name']}.{container['name']}.log"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("executor: running %s/%s: %s", pod["metadata"]["name"], container["name"], " ".join(prepared.argv))
        uid = pod["metadata"]["uid"]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(prepared.argv, env=prepared.env, cwd=prepared.scratch, stdout=out, stderr=out)
            with self._procs_lock:
                self._procs[uid] = proc
            try:
                code = proc.wait()
            finally:
                with self._procs_lock:
                    self._procs.pop(uid, None)
        message = ""
        if prepared.termination_file.exists():
            message = prepared.termination_file.read_text(errors="replace")[:MESSAGE_LIMIT]
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(log_path.read_text(errors="replace").splitlines()[-80:])[-2048:]
        return code, message

    def _start_with_init_containers(self, pod: dict[str, Any]) -> None:
        """A serving pod: its init containers for real, in order; then Running and Ready, or the
        failed init container's status, as a kubelet reports them."""
        started = _now()
        statuses = []
        for container in pod["spec"].get("initContainers", []):
            base = {"name": container["name"], "image": container["image"], "imageID": "", "restartCount": 0}
            try:
                prepared = self._prepare(pod, container)
            except PodConfigError as exc:
                self._report_waiting(pod, "CreateContainerConfigError", str(exc))
                return
            code, message = self._run_container(pod, container, prepared)
            shutil.rmtree(prepared.scratch, ignore_errors=True)
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": message,
                "startedAt": started,
                "finishedAt": _now(),
            }
            statuses.append({**base, "ready": code == 0, "started": False, "state": {"terminated": terminated}})
            if code != 0:
                self.runs.append((pod["metadata"]["name"], code))
                self._patch(
                    pod,
                    {
                        "phase": "Pending",
                        "conditions": [
                            {
                                "type": "Initialized",
                                "status": "False",
                                "reason": "ContainersNotInitialized",
                                "message": f"init container {container['name']} failed",
                                "lastTransitionTime": _now(),
                            }
                        ],
                        "initContainerStatuses": statuses,
                    },
                    final=True,
                )
                return
        now = _now()
        main = pod["spec"]["containers"]
        self._patch(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "10.244.255.1",
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now}
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "initContainerStatuses": statuses,
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "restartCount": 0,
                        "ready": True,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                    for c in main
                ],
            },
            final=True,
        )

    def _guarded(self, work: Any, pod: dict[str, Any], *args: Any) -> None:
        """Run a pod's work; if the executor itself breaks, fail the pod with the error instead of leaving
        it Running forever (a kubelet would report it; a silent hang would only show as a timeout)."""
        try:
            work(pod, *args)
        except Exception as exc:
            log.exception("executor: pod %s failed in the executor", pod["metadata"]["name"])
            self.errors.append(f"{pod['metadata']['name']}: {exc!r}")
            message = f"executor error: {exc!r}"[:MESSAGE_LIMIT]
            containers = pod["spec"]["containers"]
            self._patch(
                pod,
                {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": c["name"],
                            "image": c["image"],
                            "imageID": "",
                            "restartCount": 0,
                            "ready": False,
                            "started": False,
                            "state": {"terminated": {"exitCode": 128, "reason": "ExecutorError", "message": message}},
                        }
                        for c in containers
                    ],
                },
                final=True,
            )

    def _execute(self, pod: dict[str, Any], prepared: PreparedPod) -> None:
        container = pod["spec"]["containers"][0]
        name = pod["metadata"]["name"]
        started = _now()
        base = {"name": container["name"], "image": container["image"], "imageID": "", "restartCount": 0}
        self._patch(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                    {"type": "Ready", "status": "True", "lastTransitionTime": started},
                ],
                "containerStatuses": [
                    {**base, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}
                ],
            },
        )
        code, message = self._run_container(pod, container, prepared)
        finished = _now()
        self.runs.append((name, code))
        log.info("executor: pod %s exited with %s", name, code)
        self._patch(
            pod,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
                    {
                        "type": "ContainersReady",
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": finished,
                    },
                ],
                "containerStatuses": [
                    {
                        **base,
                        "ready": False,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": "Completed" if code == 0 else "Error",
                                "message": message,
                                "startedAt": started,
                                "finishedAt": finished,
                            }
                        },
                    }
                ],
            },
            final=True,
        )
        shutil.rmtree(prepared.scratch, ignore_errors=True)
