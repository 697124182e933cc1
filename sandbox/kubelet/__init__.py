"""The sandbox's one node: the kubelet (`kubelet.Kubelet`) watches the pods bound to it, and a pod
worker per pod starts each container as a local process group, runs its probes and hooks, writes
its logs and stops it with a grace period."""
