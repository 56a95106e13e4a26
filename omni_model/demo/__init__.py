"""The embedded end-to-end demo: generate a small multi-domain corpus, ingest, bridge, train, evaluate.

It lives in ``omni_model`` because it needs both packages (data flows to the model; omni_data
never imports omni_model); ``omni-data demo`` is its command-line face.

``generate`` computes the corpus (EMT metals, GFN1-xTB crystals, GFN2-xTB molecules) in three
native formats; ``run`` chains the stages (``data_stages``, ``training``) with a ledger so that
a re-run resumes (``stages``, ``ledger``); ``progress`` shows each training's progress;
``report`` prints the table and draws the plot. Nothing heavy is imported here.
"""
