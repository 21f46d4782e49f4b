"""skiffd's volumes (the local driver): see service.py."""
