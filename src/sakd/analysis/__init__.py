"""Measurements of trained models."""

from sakd.analysis.firing import FiringRateMonitor

__all__ = ["FiringRateMonitor"]
