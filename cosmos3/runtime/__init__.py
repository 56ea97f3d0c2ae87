"""Speed and memory features around the transformer: block swap, text-tower eviction, step cache, compile."""
