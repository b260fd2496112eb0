"""Generation: GenerateRequest + generate (generate.py), the warm pipeline, regions, samplers, PNG records."""
