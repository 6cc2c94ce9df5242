"""Independent Kafka consumers: quota accounting, video detection and the live fan-out."""
