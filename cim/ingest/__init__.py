"""Readers, validation and loading of city data from files."""
