"""Layer 2: generation in pure Python over the core objects (never touches capi)."""
