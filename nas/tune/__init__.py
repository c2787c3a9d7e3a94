"""nas.tune."""
