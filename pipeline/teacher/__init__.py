"""Teacher backends: ``replay`` (recorded outputs) and ``openai`` (a live OpenAI-compatible endpoint)."""
