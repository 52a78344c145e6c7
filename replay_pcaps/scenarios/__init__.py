"""Protocol scenario generators: one module per protocol, each with a SCENARIOS table."""
