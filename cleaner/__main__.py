"""``python -m cleaner``: the same Typer app as the ``cleaner`` console script."""

from cleaner.cli import main

if __name__ == "__main__":
    main()
