"""The command line: ``python -m localcloud`` and what only its commands use."""
