"""Monitors: dbt tests and source freshness as monitors, with history and Slack/email alerts."""
