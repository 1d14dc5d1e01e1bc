"""``python -m loadtest``: the same as the ``ocs-loadtest`` command."""

from loadtest.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
