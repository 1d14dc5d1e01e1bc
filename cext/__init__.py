"""cext package."""
