//! Loki's `.logqltest` conformance scripts: INTERFACE STUB — helper C implements.
