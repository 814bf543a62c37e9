"""The trio host: runner, guarded internals and I/O object."""
