"""The write path: sessions, uploads streamed into S3 multipart, lifecycle events to Kafka."""
