"""Toy world: stick-figure fighters with known ground truth, a base model trained on them, detectors."""
