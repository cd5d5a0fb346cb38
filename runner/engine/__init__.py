"""The runner's engine: matching events to automations, pending sends, the send loop."""
