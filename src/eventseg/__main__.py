"""python -m eventseg <command> [overrides]: the `eventseg` command (`python -m eventseg` lists the commands)."""

from eventseg.cli import main

if __name__ == "__main__":
    main()
