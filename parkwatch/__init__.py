"""ParkWatch: security situational awareness for industrial internet parks.

The shared kernel: schema, config, errors, registries, topology and the ``parkwatch`` CLI.
Pipeline stages (collectors, detectors, correlator) depend on this package, never on each other.
"""

__version__ = "0.1.0"
