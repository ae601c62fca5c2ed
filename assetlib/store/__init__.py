"""PostgreSQL + pgvector store: connection, schema, bulk loads and kNN search."""
