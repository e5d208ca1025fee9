"""``python -m service`` is the ``wabahooks`` command."""

from service.cli import main

main()
