"""Encoders: SigLIP (local), Qwen through DashScope (remote), e5 (local, text only)."""
