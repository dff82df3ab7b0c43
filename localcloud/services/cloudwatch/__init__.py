"""CloudWatch: metric alarms that evaluate."""
