"""Kubernetes objects written as a real API server returns them, for the adapter's contract
tests: a Deployment with its defaults, an autoscaling/v2 HPA with status, pods in the states
kubectl names (Running with a native sidecar, Init:1/2, CrashLoopBackOff, Terminating), core/v1
and events.k8s.io-style Events, and PodMetrics in metrics-server's units.

Issue 14's rollout fixtures, each after Kubernetes' own code or documentation (docs/rollouts.md
says where): pods owned by their ReplicaSet, a pod the kubelet evicted (`Failed`, `Evicted`), an
event recorded through events.k8s.io (null `lastTimestamp`, a `series`), an HPA whose
ContainerResource metric failed, and Deployments rolled out and stuck past their deadline."""

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


NEW_RS_REF = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "llm-backend-7d9f8c6b5",
    "uid": "0b5c2d1e-3333-4a3b-9c1d-000000000003",
    "controller": True,
    "blockOwnerDeletion": True,
}
"""A pod's reference to its ReplicaSet (`metav1.NewControllerRef`, as the ReplicaSet
controller writes it)."""


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
            "ownerReferences": [NEW_RS_REF],
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


# -- issue 14: rollouts --------------------------------------------------------------------------

REPLICASET = yaml.safe_load("""
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: llm-backend-7d9f8c6b5
  namespace: kube-llm
  uid: 0b5c2d1e-3333-4a3b-9c1d-000000000003
  resourceVersion: "1390"
  generation: 2
  creationTimestamp: "2026-01-10T09:00:40Z"
  labels: {app.kubernetes.io/name: llm-backend, pod-template-hash: 7d9f8c6b5, tier: chat}
  annotations:
    deployment.kubernetes.io/desired-replicas: "3"
    deployment.kubernetes.io/max-replicas: "4"
    deployment.kubernetes.io/revision: "2"
  ownerReferences:
    - apiVersion: apps/v1
      kind: Deployment
      name: llm-backend
      uid: 0b5c2d1e-1111-4a3b-9c1d-000000000001
      controller: true
      blockOwnerDeletion: true
spec:
  replicas: 3
  selector:
    matchLabels: {app.kubernetes.io/name: llm-backend, pod-template-hash: 7d9f8c6b5}
  template:
    metadata:
      labels: {app.kubernetes.io/name: llm-backend, pod-template-hash: 7d9f8c6b5, tier: chat}
    spec:
      containers: [{name: backend, image: "kube-llm-backend:dev"}]
status:
  replicas: 3
  fullyLabeledReplicas: 3
  readyReplicas: 3
  availableReplicas: 3
  observedGeneration: 2
""")

DEPLOYMENT_ROLLED_OUT = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: llm-backend
  namespace: kube-llm
  uid: 0b5c2d1e-1111-4a3b-9c1d-000000000001
  resourceVersion: "1401"
  generation: 4
  creationTimestamp: "2026-01-10T09:00:00Z"
  annotations: {deployment.kubernetes.io/revision: "2"}
  labels: {app.kubernetes.io/name: llm-backend}
spec:
  replicas: 3
  progressDeadlineSeconds: 600
  revisionHistoryLimit: 10
  selector:
    matchLabels: {app.kubernetes.io/name: llm-backend}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
  template:
    metadata:
      labels: {app.kubernetes.io/name: llm-backend, tier: chat}
    spec:
      containers: [{name: backend, image: "kube-llm-backend:dev"}]
status:
  observedGeneration: 4
  replicas: 3
  updatedReplicas: 3
  readyReplicas: 3
  availableReplicas: 3
  conditions:
    - type: Available
      status: "True"
      lastUpdateTime: "2026-01-10T09:01:20Z"
      lastTransitionTime: "2026-01-10T09:01:20Z"
      reason: MinimumReplicasAvailable
      message: Deployment has minimum availability.
    - type: Progressing
      status: "True"
      lastUpdateTime: "2026-01-10T09:03:10Z"
      lastTransitionTime: "2026-01-10T09:00:00Z"
      reason: NewReplicaSetAvailable
      message: ReplicaSet "llm-backend-7d9f8c6b5" has successfully progressed.
""")

DEPLOYMENT_STUCK: dict[str, Any] = {
    **DEPLOYMENT_ROLLED_OUT,
    "metadata": {
        **DEPLOYMENT_ROLLED_OUT["metadata"],
        "resourceVersion": "1650",
        "generation": 5,
        "annotations": {"deployment.kubernetes.io/revision": "3"},
    },
    "status": yaml.safe_load("""
observedGeneration: 5
replicas: 4
updatedReplicas: 2
readyReplicas: 2
availableReplicas: 2
unavailableReplicas: 2
conditions:
  - type: Available
    status: "True"
    lastUpdateTime: "2026-01-10T09:10:00Z"
    lastTransitionTime: "2026-01-10T09:10:00Z"
    reason: MinimumReplicasAvailable
    message: Deployment has minimum availability.
  - type: Progressing
    status: "False"
    lastUpdateTime: "2026-01-10T09:20:05Z"
    lastTransitionTime: "2026-01-10T09:20:05Z"
    reason: ProgressDeadlineExceeded
    message: ReplicaSet "llm-backend-6b8d9c7f4" has timed out progressing.
"""),
}
"""The same Deployment after a template change whose new pods never turned Ready: the
controller gave up at `progressDeadlineSeconds` (the docs' "Failed Deployment")."""

EVICTED = _pod(
    "llm-backend-5c4f7d8b9-eeeee",
    {
        "phase": "Failed",
        "reason": "Evicted",
        "message": (
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
            "91344Ki. Container backend was using 1183724Ki, request is 128Mi, has larger "
            "consumption of memory. "
        ),
        "startTime": "2026-01-10T08:30:01Z",
        "conditions": [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "lastTransitionTime": "2026-01-10T08:59:00Z",
                "reason": "TerminationByKubelet",
                "message": "The node was low on resource: memory. ",
            },
            {
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": "2026-01-10T08:59:02Z",
                "reason": "PodFailed",
            },
        ],
        "containerStatuses": [
            {
                "name": "backend",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": (
                            "The container could not be located when the pod was terminated"
                        ),
                        "startedAt": None,
                        "finishedAt": None,
                    }
                },
            }
        ],
    },
    labels={**SELECTOR, "tier": "chat", "pod-template-hash": "5c4f7d8b9"},
    ownerReferences=[
        {
            **NEW_RS_REF,
            "name": "llm-backend-5c4f7d8b9",
            "uid": "0b5c2d1e-4444-4a3b-9c1d-000000000004",
        }
    ],
    creationTimestamp="2026-01-10T08:30:00Z",
)
"""A pod of the old ReplicaSet the kubelet evicted under memory pressure and left behind."""


def running_pod(suffix: str) -> dict[str, Any]:
    """A Ready pod of the new ReplicaSet (`llm-backend-7d9f8c6b5-<suffix>`)."""
    pod = _pod(f"llm-backend-7d9f8c6b5-{suffix}", RUNNING["status"])
    pod["metadata"]["labels"] = {**SELECTOR, "tier": "chat", "pod-template-hash": "7d9f8c6b5"}
    return pod


SERIES_EVENT = {
    **event(
        "llm-backend-6b8d9c7f4-fffff.1819a2b3c4d5e6f7",
        "Pod",
        "llm-backend-6b8d9c7f4-fffff",
        "FailedScheduling",
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are "
        "available: 1 No preemption victims found for incoming pod.",
        type="Warning",
    ),
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "count": None,
    "eventTime": "2026-01-10T09:11:00.412345Z",
    "series": {"count": 4, "lastObservedTime": "2026-01-10T09:15:00.800123Z"},
    "action": "Scheduling",
    "reportingComponent": "default-scheduler",
    "reportingInstance": "default-scheduler-minikube",
}
"""An event recorded through events.k8s.io/v1 (the scheduler's), as core/v1 shows it: no
`lastTimestamp`, `firstTimestamp` or `count`, but `eventTime` and a `series`."""

HPA_FAILED_METRIC = {
    **HPA,
    "spec": {**HPA["spec"], "metrics": HPA["spec"]["metrics"][:2]},
    "status": {
        "currentReplicas": 3,
        "desiredReplicas": 3,
        "lastScaleTime": "2026-01-10T09:05:00Z",
        # The controller sizes currentMetrics to the spec and leaves a metric it could not
        # read as an empty MetricStatus, which serialises as `type: ""`.
        "currentMetrics": [
            {
                "type": "ContainerResource",
                "containerResource": {
                    "name": "cpu",
                    "container": "engine",
                    "current": {"averageUtilization": 12, "averageValue": "24m"},
                },
            },
            {"type": ""},
        ],
        "conditions": [
            {
                "type": "AbleToScale",
                "status": "True",
                "lastTransitionTime": "2026-01-10T09:00:30Z",
                "reason": "ReadyForNewScale",
                "message": "recommended size matches current size",
            },
            {
                "type": "ScalingActive",
                "status": "False",
                "lastTransitionTime": "2026-01-10T09:12:00Z",
                "reason": "FailedGetContainerResourceMetric",
                "message": (
                    "the HPA was unable to compute the replica count: failed to get memory "
                    "utilization: unable to get metrics for resource memory: no metrics "
                    "returned from resource metrics API"
                ),
            },
            {
                "type": "ScalingLimited",
                "status": "False",
                "lastTransitionTime": "2026-01-10T09:00:30Z",
                "reason": "DesiredWithinRange",
                "message": "the desired count is within the acceptable range",
            },
        ],
    },
}
"""autoscaling/v2 HPA status with the memory ContainerResource metric failing, so a scale-down
would be refused and ScalingActive turns False with the metric's reason."""
