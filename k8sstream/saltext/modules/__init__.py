"""Salt execution modules (loaded by Salt's loader, not imported by k8sstream)."""
