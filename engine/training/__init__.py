"""Training the bundled model (`mnist-tui train`)."""
