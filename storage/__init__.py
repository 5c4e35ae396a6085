"""LanceDB schemas, the single writer's upserts, readers and exports."""
