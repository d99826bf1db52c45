"""One module per suite: each runs after the shared steps (lab.pipeline) and writes its own report."""
