"""Quantised weight storage for the decoder-layer projections: int8 (per output channel), int4 (group-wise) and
the GGML block formats of GGUF files (Q8_0, Q6_K, Q5_K, Q4_K).

* :mod:`.intq` — int8 / int4 quantise and dequantise;
* :mod:`.ggml` — GGML block layouts: torch dequantisation (bit-identical to ``gguf``'s numpy reference) and
  quantisers;
* :mod:`.linear` — :class:`~.linear.QuantTensor` (packed weight + scales) and :class:`~.linear.QuantLinear`
  (dequantised per call, one layer at a time, in the activation dtype);
* :mod:`.sources` — the loader's readers: memory-mapped safetensors (with pre-quantised int8/int4) and GGUF;
* :mod:`.loader` — which projections a load stores packed (``weight_storage``) and how they are filled.
"""
