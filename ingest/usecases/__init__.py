"""What the write path does, over ports only: sessions, uploads, resumable uploads, cancels,
duplicates and quota. No HTTP, no client library, no adapter."""
