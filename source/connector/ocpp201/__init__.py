"""OCPP 2.0.1: the tables that serve a charging station speaking it (see handling.py)."""
