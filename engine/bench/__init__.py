"""The benchmark: load generators, result statistics and the `bench` command."""
