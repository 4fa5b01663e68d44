"""Read Kubernetes objects through the APIServer's list and watch."""
