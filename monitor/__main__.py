"""`python -m monitor` is the `tidemark` command."""

from monitor.cli import main

raise SystemExit(main())
