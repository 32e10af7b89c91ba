"""Teacher backends: ``replay`` (recorded outputs), ``openai`` (a live OpenAI-compatible endpoint) and
``simulated`` (a teacher of known error rates, for the sandbox)."""
