"""Reports: terminal tables, progress bars, Markdown and PNG plots."""
