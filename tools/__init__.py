"""Tools that act on a real AWS account (`make verify-aws`) and the data they share."""
