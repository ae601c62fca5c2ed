"""Training and fine-tuning SigLIP on an asset library (the demo model comes from here)."""
