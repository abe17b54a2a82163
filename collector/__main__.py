from collector.cli import main

# Guarded: multiprocessing re-imports the main module in spawned workers.
if __name__ == "__main__":
    raise SystemExit(main())
