"""Small helpers shared by the library and both command lines (no model code, no store)."""
