"""Presentation: what a person or a scraper reads (terminal tables, JSON documents,
Markdown, the HTML report, the Prometheus exposition). Imports only the domain and the
analysis types: nothing here computes a verdict or reads a store by itself."""
