"""nas.run."""
