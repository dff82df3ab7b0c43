"""Shared code of the pipeline's Lambda functions (packaged as the common layer)."""
