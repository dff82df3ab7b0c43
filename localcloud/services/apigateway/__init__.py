"""API Gateway: the template's HTTP API and its SigV4 authorization."""
