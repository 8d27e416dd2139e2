"""Model Serving endpoints: served entities in worker processes, traffic split, scale to zero, invocations."""
