"""The Publisher pane."""
