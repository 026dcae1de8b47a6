"""`python -m durable_agents_runtime` is the `durable-agents` command."""

from durable_agents_runtime.cli import main

if __name__ == "__main__":
    main()
