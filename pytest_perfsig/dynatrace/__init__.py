"""Dynatrace: one API client for a tenant (:mod:`.client`), the metric source that reads from
it (:mod:`.source`, with the Metrics API v2 and Timeseries API v1 queries in :mod:`.metrics_v2`
and :mod:`.timeseries_v1`, entity selectors in :mod:`.selectors`), and the writes: deployment
events and problem comments (:mod:`.events`).

The API token always comes from ``$DT_API_TOKEN`` and never shows in a message or a log line.
"""
