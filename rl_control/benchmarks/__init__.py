"""``rl-control bench`` commands that span layers (e.g. the actor against a sim node process)."""
