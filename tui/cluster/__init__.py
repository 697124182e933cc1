"""The Kubernetes adapter: kubeconfig, list+watch of pods, HPA, Deployment and Events, conversion to
`tui.core.model`, API errors in words, the rollout judged as `kubectl rollout status` judges it,
and the Deployment writes (rollout restart, scale).
"""
