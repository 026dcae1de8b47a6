"""Runs pydantic-ai agents durably on Temporal: config contract, worker, health and CLI."""
