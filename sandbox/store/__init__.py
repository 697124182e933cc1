"""The sandbox's state and the rules every part shares: the object store (etcd and the registry
in one), resource types, selectors, `Status` errors, quantities, the Event recorder, the pod
deletion and eviction rules, the container log files (the kubelet writes them, the API server's
`pods/log` reads them) and the lock that keeps one sandbox per state folder.

Nothing here imports the API server, the kubelet or the controllers."""
