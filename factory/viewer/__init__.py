"""`factory view`: browse one version's `all` rows in a local web page (factory.viewer.server),
queried in place from its Parquet files (factory.viewer.query), rendered without script
(factory.viewer.pages)."""
