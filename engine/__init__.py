"""mnist-tui engine: everything that works without a screen.

Broker, the three MQTT roles (input publisher, infer worker, output collector), the wire protocol,
the model and the benchmark. Nothing in this package imports textual.
"""

__version__ = "0.1.0"
