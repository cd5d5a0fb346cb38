"""The web dashboard `serve` answers under /ui (docs/dashboard.md): server-rendered pages
(Jinja2, autoescaped), our own small stylesheet, charts as inline SVG, no JavaScript.

Pages read through the same store queries and operations as the HTTP API; the forms that
change something (send now, remove, lift a suppression, erase, sign out) carry a CSRF token
of the visitor's session. The routes are in `routes.py`, which imports the pages: this
package imports none of its modules, so they can import each other without a cycle.
"""
