"""The sandbox's kube-controller-manager: Deployments (one ReplicaSet's worth of pods), disruption
budgets and endpoints, the metrics-server stand-in and the horizontal pod autoscaler (the
algorithm in `hpa`, `hpa_replicas` and `hpa_behavior`), on a shared reconcile loop."""
