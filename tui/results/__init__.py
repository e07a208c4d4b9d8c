"""The Results pane, its log, the result detail and the confusion matrix."""
