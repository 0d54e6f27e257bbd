"""`interlock serve`: the long-lived service of DESIGN section 8.

It hosts a `RunManager` in its event loop (its runs are ordinary stored runs), an HTTP API
(Starlette on uvicorn, in the same loop), event streams, `/metrics` and the schedules of the
pipelines folder. Modules: `service` (the process: store, manager, server, signals), `app`
(routes), `sse` (event streams), `metrics` (the Prometheus collector), `scheduler`, `auth`,
`tracing` (the optional OpenTelemetry spans).
"""
