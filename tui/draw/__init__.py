"""The draw dialog: a canvas to draw a digit and send it."""
