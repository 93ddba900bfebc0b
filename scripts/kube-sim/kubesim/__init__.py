"""kube-sim: a local Kubernetes API server and kubelet stand-in for pod-router.

It serves the slice of kube-apiserver that pod-router uses (pods, events,
leases, RBAC, discovery, OpenAPI) with the real JSON shapes and status codes,
and runs each pod as local processes on its own loopback address.
docs/kube-sim.md says what is and is not emulated.
"""
