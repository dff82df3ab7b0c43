"""One pipeline run (``python -m localcloud run``) and what it reads back."""
