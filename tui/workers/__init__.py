"""The Workers pane and its charts."""
