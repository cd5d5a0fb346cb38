"""Postwright: a GitOps runner for automated marketing email."""

__version__ = "0.1.0"
