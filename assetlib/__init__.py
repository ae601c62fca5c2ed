"""assetlib: text and image search over large 3D asset libraries, SigLIP vs Qwen, on PostgreSQL + pgvector."""

__version__ = "0.1.0"
