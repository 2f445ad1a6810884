"""Metrics, reports and plots; the tasks choose which of these judge them."""
