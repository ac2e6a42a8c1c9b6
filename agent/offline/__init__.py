"""Offline analysis: replay a load trace through the live control policy, and its report."""
