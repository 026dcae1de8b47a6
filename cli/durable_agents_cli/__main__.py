"""`python -m durable_agents_cli` is the `durable-agents` command."""

from durable_agents_cli.main import main

if __name__ == "__main__":
    main()
