"""Lambda: real handlers in warm worker processes."""
