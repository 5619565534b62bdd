"""Dashboards as code: YAML definitions rendered to offline HTML and provisioned to Metabase."""
