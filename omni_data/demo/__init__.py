"""The embedded end-to-end demo: generate a small multi-domain corpus, ingest, bridge, train, evaluate.

``generate`` computes the corpus (EMT metals, GFN1-xTB crystals, GFN2-xTB molecules) in three
native formats; ``run`` chains the Omni stages on it; ``report`` prints the table and draws the plot.
Nothing heavy is imported here.
"""
