"""evolve stage."""
