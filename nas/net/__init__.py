"""nas.net."""
