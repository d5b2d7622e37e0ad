"""Measurements of trained models: operation counts and energy, Figure 4, the HTML report (the
firing-rate monitor is :class:`sakd.neurons.FiringRateMonitor`)."""
