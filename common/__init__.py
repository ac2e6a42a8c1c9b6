"""What the agent, the drivers and the simulators share without depending on each other: strict
reading of TOML files (tomlcheck). Depends on nothing of the project."""
