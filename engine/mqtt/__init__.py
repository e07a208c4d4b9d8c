"""MQTT transport: broker addresses, the paho client and its fast path, the embedded broker."""
