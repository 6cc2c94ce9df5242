"""Resumable uploads over tus 1.0.0, at /v1/tus/: an upload session that any instance can resume.

`service.TusService` is the entry point (its routes are `ingest.http.tus`):
`resolving` settles what a request finds, `creating` makes an upload; `state`
keeps the resumable state in the session document, `lease` lets one request at
a time write and `leased` runs a request's work under it, `patching` runs one
PATCH: its `body` held to the upload's limits, its bytes stored (`storing`,
through `writer`: the pipeline's part engine at part numbers that follow
offsets, and the `tail`), its offset committed (`committing`), the file's hash
carried on (`running`); `completion` finishes the file, `events` numbers its
events; `admission` holds the PATCH's own checks, over the rules every way
in shares. Concatenation: `partials` (pieces of a file, checked, claimed and
consumed), `concat` (what S3 can join, and the copies), `joining` (a final
started and run), `final` (one file joined from its pieces).
Nothing is kept on local disk: S3 holds the parts, the tail and the state.
"""
