"""The command line, and the composition root: settings read once, objects wired, one error
handler mapping failures to exit codes."""
