"""pvsched-lab: build, boot and measure paravirtualized vCPU scheduling."""

__version__ = "0.1.0"
