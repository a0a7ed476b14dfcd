"""``python -m cliptrase.eval`` = ``cliptrase-eval`` (the Hydra evaluation app)."""

from cliptrase.cli.evaluate import main

if __name__ == "__main__":
    main()
