"""The `cim` command-line tool."""
