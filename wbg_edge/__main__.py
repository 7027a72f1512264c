"""`python -m wbg_edge` = the `wbg-edge` command."""
from .cli import main

raise SystemExit(main())
