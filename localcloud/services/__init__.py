"""What each AWS service does in the local cloud beyond moto, one package each."""
