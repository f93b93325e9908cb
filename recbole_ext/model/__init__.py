"""Models of recbole-ext; shared layers live in ``layers.py``."""
