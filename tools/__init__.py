"""What the agent calls: LLM backends, search backends, the corpus/index store, web fetch + extract."""
