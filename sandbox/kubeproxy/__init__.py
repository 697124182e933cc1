"""The sandbox's stand-in for kube-proxy: a loopback port per Service port it relays."""
