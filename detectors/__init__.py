"""Detectors: facts (flows, ARP and protocol events) in, alerts out (Sigma rules, models)."""
