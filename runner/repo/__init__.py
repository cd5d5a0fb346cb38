"""The repository as files: the one door to files on disk, snapshots of a commit or of the
working tree, and git plumbing."""
