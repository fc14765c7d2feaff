"""bench/run's parts: processes pinned to cores, the shared material, the servers on both
sides, the load generators, the rows and the table."""
