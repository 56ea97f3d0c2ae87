"""The Cosmos3 Mixture-of-Transformers DiT: config, layers, the two towers, attention, RoPE, loading, fp8."""
