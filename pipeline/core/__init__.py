"""The foundation every stage shares: errors, paths, the spec (params.yaml), the typed records and
the artifact files they live in, and the stage I/O helpers. It imports nothing else of the package."""
