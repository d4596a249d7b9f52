"""archive-node's benchmark: a synthetic corpus, a real `serve` process, timed DIMSE clients."""
