"""The topic inspector: tree, payload view, filter and publish dialogs."""
