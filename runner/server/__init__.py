"""The HTTP side of `postwright serve`: the app, its request handlers, the request gate,
authentication, metrics and the OpenAPI document."""
