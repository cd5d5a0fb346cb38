"""The request handlers of the HTTP API (README.md "The runner's HTTP API"), grouped by area;
server/app.py routes them."""
