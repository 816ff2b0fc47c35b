"""``python -m koopscope.cli``: the same as the ``koopscope`` console script."""

from koopscope.cli import main

raise SystemExit(main())
