"""The three pipeline roles (input, infer, output), their shared base, worker pools and the local pipeline."""
