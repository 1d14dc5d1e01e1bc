"""``python -m ocs``: the same as the ``ocs`` command."""

from ocs.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
