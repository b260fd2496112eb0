"""`python -m lorastudio.cli`: the same as the `lorastudio` command (used to spawn worker processes)."""

from lorastudio.cli import main

main()
