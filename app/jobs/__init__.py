"""Jobs: states, leases, the reaper, and sending work to the broker."""
