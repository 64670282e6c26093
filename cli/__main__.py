"""`python -m cli`: the `datashare` command."""

from cli.app import main

main()
