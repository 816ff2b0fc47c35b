"""Koopman layers against the plain model (issue 8): perplexity, step time and forward cost; see RESULTS.md."""
