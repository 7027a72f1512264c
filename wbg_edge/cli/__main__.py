"""`python -m wbg_edge.cli` = the `wbg-edge` command."""
from . import main

raise SystemExit(main())
