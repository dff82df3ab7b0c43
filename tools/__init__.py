"""Project tools the Makefile runs: `make verify-aws` (verify_aws, cleanup, costs and its
price table) and `make licenses` (licenses)."""
