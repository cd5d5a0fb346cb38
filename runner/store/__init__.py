"""Durable state of the runner: the Store protocol and one implementation per database."""
