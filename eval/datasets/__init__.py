"""Benchmark loaders: ReasonSeg, RefCOCO/RefCOCO+/RefCOCOg and OmniLabel (one module each)."""
