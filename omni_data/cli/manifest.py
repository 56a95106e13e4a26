"""``omni-data manifest draft FILE [--out X.yaml]`` and ``omni-data manifest check X.yaml``.

``draft`` writes a manifest from what a file holds (``omni_data.manifest_draft``): the reader,
the labels and the keys they came from, guessed units marked ``# review``, and ``# FILL IN``
lines for what only the user knows. ``check`` validates a manifest and reports every problem
at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omni_data.cli.argtypes import out_file
from omni_data.readers import READERS

__all__ = ["add_arguments", "run"]

ACTIONS = ("draft", "check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=ACTIONS, help="draft: write a manifest from FILE; check: validate the manifest FILE"
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="data file or folder (draft), manifest YAML (check)")
    parser.add_argument("--out", type=out_file, metavar="X.yaml", help="draft: write here (default: print it)")
    parser.add_argument("--format", choices=sorted(READERS), help="draft: reader name (default: sniffed from FILE)")
    parser.add_argument("--records", type=int, default=5, metavar="N", help="draft: records to look at (default 5)")
    parser.add_argument("--name", help="draft: dataset name (default: from the file name)")
    parser.add_argument("--force", action="store_true", help="draft: replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist

    if args.records < 1:
        raise ValueError(f"--records must be >= 1, got {args.records}")
    if args.action == "check":
        from omni_data.manifest import load_manifest

        m = load_manifest(str(args.file))  # a name or a path; every problem at once, one line (exit 2)
        print(
            f"{args.file}: valid manifest {m.name!r}: {m.format} reader, task {', '.join(m.tasks)}, "
            f"keys mapped: {', '.join(f'{k}<-{v}' for k, v in m.key_map.items()) or 'reader defaults'}"
        )
        return 0
    from omni_data.manifest_draft import FILL_IN, draft_manifest, write_draft

    must_exist(args.file, "data file")
    draft = draft_manifest(args.file, args.format, args.records, args.name)
    if args.out is None:
        sys.stdout.write(draft.text)
        return 0
    write_draft(draft, args.out, overwrite=args.force)
    todo = sum(f'""  {FILL_IN}' in line for line in draft.text.splitlines())
    print(
        f"wrote {args.out}: {len(draft.records)} records of {args.file} read with the {draft.reader} reader; "
        f"fill the {todo} '# FILL IN' lines and check the '# review' ones, then "
        f"`omni-data manifest check {args.out}`",
        file=sys.stderr,
    )
    return 0
