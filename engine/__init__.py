"""live_deepz.engine: inference backends, ring buffers and the live pipeline (no Qt)."""
