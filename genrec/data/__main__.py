"""`python -m genrec.data NAME [--set data.k=v ...]`: counts and split fingerprint."""
from genrec.cli import main

if __name__ == "__main__":
    import sys

    main(["data", *sys.argv[1:]])
