"""Templates: the sandboxed Jinja environment, rendering one email, the static checks of a
template, and the worker processes that render under hard CPU and memory caps."""
