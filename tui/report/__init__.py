"""The report folder: Markdown, the record as JSON (and back), and the timeline chart."""
