"""OCPP-J, the RPC framing every OCPP version shares: one sans-I/O endpoint (endpoint.py)."""
