"""Divergence-prediction benchmark (issue 5): RKSP Table 2 reproduced under two initialisations; see README.md."""
