"""Run the n2n-raw command line from a checkout: ``python cli.py --help``."""
from n2n_raw.cli import main

if __name__ == "__main__":
    main()
