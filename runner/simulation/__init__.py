"""`postwright simulate`: scenario files run on the real engine with a fake clock
(docs/simulate.md)."""
