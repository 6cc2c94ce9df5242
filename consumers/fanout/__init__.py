"""The live service: WebSocket feed with replay, live progress, and the dashboard pages.

`hub` routes every record read from the topics to the clients it concerns,
`client` is one socket with its bounded queue and writer, `cursor` and
`replay` let a reconnecting client miss nothing, `progress` is the state of
the live progress route, `websocket` and `http` are the routes, `service`
runs a replica and `app` mounts it; `closecodes` lists the close codes.
"""
