"""Deployment assets: the container image, compose and Kubernetes files, and the local stack."""
