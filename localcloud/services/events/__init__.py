"""EventBridge: S3 object events to the rules that start the state machine."""
