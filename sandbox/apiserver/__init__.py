"""The sandbox's API server: routing, authentication and RBAC, request bodies, admission checks,
PATCH, watch, Table printing, discovery, the service and pod proxies, the access reviews and the
subresources (`server.ApiServer` and `server.create_app` wire them). It reaches pods only through
the store and the small runtime interface in `context`."""
