"""KSS against no control and gradient clipping on the divergence sweep's models and task (issue 6)."""
