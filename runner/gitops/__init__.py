"""GitOps: the repository applied to the running engine, on start-up and on every change the
file watcher sees."""
