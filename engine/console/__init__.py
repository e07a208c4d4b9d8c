"""The console's Textual-free model of the broker: the observer, its child process, local roles, exports."""
