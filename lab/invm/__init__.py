"""Code that runs inside the VMs: stdlib-only Python for level 1, busybox sh for level 2."""
