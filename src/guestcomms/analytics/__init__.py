"""Analytics: delivery and engagement figures, rates with confidence intervals, time series,
per-link clicks, a score against the organization's own baseline and recommendations.

``figures`` is pure; ``rollup`` keeps hourly pre-aggregated counters (``models``) up to a
watermark; ``repository`` answers queries from the rollups plus the raw tail past the
watermark, so figures are exact whether or not the rollup job has run.
"""
