"""Which checkpoint is best: an evaluation set rendered at each checkpoint, scored, and one chosen."""
