"""OCPP 1.6 to BEMCom MQTT connector."""

__version__ = "0.3.0"
