"""What the write path does, over ports only: sessions, the admission rules every way in
shares, uploads, cancellation, resumable uploads, cancels relayed between instances,
duplicates and quota. No HTTP, no client library, no adapter."""
