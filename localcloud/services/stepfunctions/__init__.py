"""Step Functions: Wait states that end when what they poll settles."""
