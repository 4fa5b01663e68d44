"""Read Kubernetes objects straight from etcd (no load on the APIServer)."""
