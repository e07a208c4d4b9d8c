"""The run-time files that live outside the code, as package data (engine/datafiles.py reads them).

`mosquitto.conf` and `assets` here are relative symbolic links to the top-level files of the repository;
a wheel carries copies of what they point to.
"""
