"""DSA-110 UVH5 subband files -> validated CASA Measurement Sets (docs/architecture.md)."""
