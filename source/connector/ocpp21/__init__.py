"""OCPP 2.1: the tables that serve a charging station speaking it; 2.0.1's entries where the messages are the same."""
