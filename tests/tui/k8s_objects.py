"""Kubernetes objects written as a real API server returns them, for the adapter's contract
tests: a Deployment with its defaults, an autoscaling/v2 HPA with status, pods in the states
kubectl names (Running with a native sidecar, Init:1/2, CrashLoopBackOff, Terminating), core/v1
and events.k8s.io-style Events, and PodMetrics in metrics-server's units."""

from __future__ import annotations

from typing import Any

import yaml

NS = "kube-llm"
SELECTOR = {"app.kubernetes.io/name": "llm-backend"}

DEPLOYMENT = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: llm-backend
  namespace: kube-llm
  uid: 0b5c2d1e-1111-4a3b-9c1d-000000000001
  resourceVersion: "1201"
  generation: 3
  creationTimestamp: "2026-01-10T09:00:00Z"
  labels: {app.kubernetes.io/name: llm-backend, app.kubernetes.io/part-of: kube-llm}
spec:
  replicas: 3
  selector:
    matchLabels: {app.kubernetes.io/name: llm-backend}
    matchExpressions:
      - {key: tier, operator: In, values: [web, chat]}
      - {key: canary, operator: DoesNotExist}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app.kubernetes.io/name: llm-backend, tier: chat}
    spec:
      containers: [{name: backend, image: "kube-llm-backend:dev"}]
status:
  observedGeneration: 3
  replicas: 3
  updatedReplicas: 3
  readyReplicas: 2
  availableReplicas: 2
  unavailableReplicas: 1
""")

HPA = yaml.safe_load("""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: llm-backend
  namespace: kube-llm
  uid: 0b5c2d1e-2222-4a3b-9c1d-000000000002
  resourceVersion: "1300"
  creationTimestamp: "2026-01-10T09:00:00Z"
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm-backend}
  minReplicas: 2
  maxReplicas: 6
  metrics:
    - type: ContainerResource
      containerResource:
        name: cpu
        container: engine
        target: {type: Utilization, averageUtilization: 70}
    - type: ContainerResource
      containerResource:
        name: memory
        container: backend
        target: {type: Utilization, averageUtilization: 80}
    - type: Pods
      pods:
        metric: {name: inflight_requests}
        target: {type: AverageValue, averageValue: "2"}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 15
      policies: [{type: Pods, value: 2, periodSeconds: 15}]
    scaleDown:
      stabilizationWindowSeconds: 600
status:
  currentReplicas: 3
  desiredReplicas: 4
  lastScaleTime: "2026-01-10T09:05:00Z"
  currentMetrics:
    - type: ContainerResource
      containerResource:
        name: cpu
        container: engine
        current: {averageUtilization: 187, averageValue: 374m}
    - type: ContainerResource
      containerResource:
        name: memory
        container: backend
        current: {averageUtilization: 41, averageValue: "55574528"}
  conditions:
    - type: AbleToScale
      status: "True"
      lastTransitionTime: "2026-01-10T09:00:30Z"
      reason: SucceededRescale
      message: the HPA controller was able to update the target scale to 4
    - type: ScalingActive
      status: "True"
      lastTransitionTime: "2026-01-10T09:00:30Z"
      reason: ValidMetricFound
      message: >-
        the HPA was able to successfully calculate a replica count from cpu container
        resource utilization (percentage of request)
    - type: ScalingLimited
      status: "False"
      lastTransitionTime: "2026-01-10T09:00:30Z"
      reason: DesiredWithinRange
      message: the desired count is within the acceptable range
""")

_POD_SPEC = yaml.safe_load("""
terminationGracePeriodSeconds: 35
initContainers:
  - name: engine
    image: ollama/ollama:0.21.2
    restartPolicy: Always
    resources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {memory: 2Gi}
  - name: model-pull
    image: ollama/ollama:0.21.2
    resources:
      requests: {cpu: 100m, memory: 64Mi}
containers:
  - name: backend
    image: kube-llm-backend:dev
    resources:
      requests: {cpu: "0.25", memory: 128Mi}
      limits: {memory: 256Mi}
""")


def _pod(name: str, status: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "resourceVersion": "1400",
            "creationTimestamp": "2026-01-10T09:01:00Z",
            "labels": {**SELECTOR, "tier": "chat"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-backend-7d9f8c6b5"}
            ],
            **metadata,
        },
        "spec": _POD_SPEC,
        "status": status,
    }


def _conditions(ready: bool, initialized: bool = True) -> list[dict[str, str]]:
    def condition(kind: str, value: bool, at: str) -> dict[str, str]:
        return {"type": kind, "status": str(value), "lastTransitionTime": at}

    return [
        condition("PodReadyToStartContainers", True, "2026-01-10T09:01:02Z"),
        condition("Initialized", initialized, "2026-01-10T09:01:05Z"),
        condition("Ready", ready, "2026-01-10T09:01:20Z"),
        condition("ContainersReady", ready, "2026-01-10T09:01:20Z"),
        condition("PodScheduled", True, "2026-01-10T09:01:00Z"),
    ]


_ENGINE_RUNNING = {
    "name": "engine",
    "ready": True,
    "started": True,
    "restartCount": 1,
    "state": {"running": {"startedAt": "2026-01-10T09:01:03Z"}},
}
_PULL_DONE = {
    "name": "model-pull",
    "ready": True,
    "started": False,
    "restartCount": 0,
    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
}

RUNNING = _pod(
    "llm-backend-7d9f8c6b5-aaaaa",
    {
        "phase": "Running",
        "startTime": "2026-01-10T09:01:01Z",
        "conditions": _conditions(ready=True),
        "initContainerStatuses": [_ENGINE_RUNNING, _PULL_DONE],
        "containerStatuses": [
            {
                "name": "backend",
                "ready": True,
                "started": True,
                "restartCount": 2,
                "state": {"running": {"startedAt": "2026-01-10T09:01:06Z"}},
            }
        ],
    },
)
INITIALIZING = _pod(
    "llm-backend-7d9f8c6b5-bbbbb",
    {
        "phase": "Pending",
        "startTime": "2026-01-10T09:02:01Z",
        "conditions": _conditions(ready=False, initialized=False),
        "initContainerStatuses": [
            {**_ENGINE_RUNNING, "restartCount": 0},
            {
                "name": "model-pull",
                "ready": False,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-10T09:02:03Z"}},
            },
        ],
        "containerStatuses": [
            {
                "name": "backend",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}},
            }
        ],
    },
)
CRASHING = _pod(
    "llm-backend-7d9f8c6b5-ccccc",
    {
        "phase": "Running",
        "startTime": "2026-01-10T09:01:01Z",
        "conditions": _conditions(ready=False),
        "initContainerStatuses": [_ENGINE_RUNNING, _PULL_DONE],
        "containerStatuses": [
            {
                "name": "backend",
                "ready": False,
                "started": False,
                "restartCount": 5,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 2m40s restarting failed container=backend",
                    }
                },
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ],
    },
)
TERMINATING = _pod(
    "llm-backend-7d9f8c6b5-ddddd",
    {
        "phase": "Running",
        "startTime": "2026-01-10T09:01:01Z",
        "conditions": _conditions(ready=False),
        "initContainerStatuses": [_ENGINE_RUNNING, _PULL_DONE],
        "containerStatuses": [
            {
                "name": "backend",
                "ready": False,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-10T09:01:06Z"}},
            }
        ],
    },
    deletionTimestamp="2026-01-10T09:10:35Z",
    deletionGracePeriodSeconds=35,
)


def event(name: str, kind: str, involved: str, reason: str, message: str, **extra: Any) -> Any:
    """A core/v1 Event about `kind`/`involved`; `extra` sets counts, times, `type`."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-01-10T09:03:00Z",
        },
        "involvedObject": {"kind": kind, "name": involved, "namespace": NS},
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet"},
        "type": extra.pop("type", "Normal"),
        **extra,
    }


EVENTS = [
    event(
        "e1",
        "Pod",
        RUNNING["metadata"]["name"],
        "Started",
        "Started container backend",
        count=1,
        firstTimestamp="2026-01-10T09:01:06Z",
        lastTimestamp="2026-01-10T09:01:06Z",
    ),
    event(
        "e2",
        "Pod",
        CRASHING["metadata"]["name"],
        "BackOff",
        "Back-off restarting failed container backend",
        type="Warning",
        count=7,
        firstTimestamp="2026-01-10T09:02:00Z",
        lastTimestamp="2026-01-10T09:06:00Z",
    ),
    # An events.k8s.io-style event read through core/v1, as the API server shows it: eventTime
    # and series, and null timestamps (metav1.Time marshals a zero time as null, and the
    # events.k8s.io conversion leaves the deprecated timestamps zero).
    event(
        "e3",
        "HorizontalPodAutoscaler",
        "llm-backend",
        "SuccessfulRescale",
        "New size: 4; reason: cpu resource utilization above target",
        eventTime="2026-01-10T09:05:00.123456Z",
        series={"count": 2, "lastObservedTime": "2026-01-10T09:05:30.000000Z"},
        firstTimestamp=None,
        lastTimestamp=None,
    ),
    event(
        "e4",
        "Pod",
        "other-app-5f6d7-xxxxx",
        "Started",
        "not ours",
        count=1,
        lastTimestamp="2026-01-10T09:04:00Z",
    ),
    event(
        "e5",
        "Deployment",
        "other-app",
        "ScalingReplicaSet",
        "not ours either",
        lastTimestamp="2026-01-10T09:04:00Z",
    ),
]


def pod_metrics(pod: dict[str, Any], engine: dict[str, str], backend: dict[str, str]) -> Any:
    """A PodMetrics (metrics.k8s.io/v1beta1) for `pod` with each container's usage."""
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {
            "name": pod["metadata"]["name"],
            "namespace": NS,
            "labels": pod["metadata"]["labels"],
        },
        "timestamp": "2026-01-10T09:08:00Z",
        "window": "10.53s",
        "containers": [
            {"name": "engine", "usage": engine},
            {"name": "backend", "usage": backend},
        ],
    }
