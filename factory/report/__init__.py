"""A version's report: PNG plots beside the card (plots/*.png, embedded in README.md so the Hub page
shows them) and report.html, one self-contained page (plots inlined, no script, no network).

Both are built from the version's own `all` Parquet files, a row group at a time
(factory.report.collect), while the version is being built; their files are listed and hashed in
the manifest like the data files.

Modules: collect (one pass over the rows), plots (matplotlib), page (report.html), build (writes
them). The file names live with the store's other names (factory.store.layout).
"""
