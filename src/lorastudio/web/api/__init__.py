"""JSON routes under /api/v1, one module per resource; each calls the studio services and nothing else."""
