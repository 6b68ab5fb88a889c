"""Runners: claim due sub-jobs under a lease, run their driver steps, record the results."""
