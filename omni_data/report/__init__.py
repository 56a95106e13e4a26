"""The HTML report of one or more stores: ``collect`` (streamed statistics), ``plots`` (PNGs with
matplotlib Agg), ``periodic_table`` (element heat map) and ``html`` (the page)."""
