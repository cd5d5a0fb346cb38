"""The request handlers of the HTTP API (SPEC 5.2), grouped by area; runner.server routes them."""
