"""Drivers do the work behind sub-jobs: ``simulated`` built in, others as plug-ins
(entry-point group ``imagejobs.drivers``). The interface is in ``interface.py``."""
