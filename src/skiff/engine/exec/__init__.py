"""skiffd's exec instances: see service.py."""
