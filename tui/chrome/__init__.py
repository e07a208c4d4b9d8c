"""The frame around the panes: header, footer, help screen."""
