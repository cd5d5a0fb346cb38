"""The pure core: the automation model, configuration, records, lifecycle rules, conditions
and timing. No I/O: every other part builds on it, and it imports none of them."""
